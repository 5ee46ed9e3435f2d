// Draws each page's usage chart with Chart.js (vendored under vendor/) from the JSON the server rendered.
document.querySelectorAll("figure.chart canvas").forEach(function (canvas) {
  var data = JSON.parse(document.getElementById(canvas.id + "-data").textContent);
  new Chart(canvas, {
    type: "bar",
    data: {
      labels: data.labels,
      datasets: [
        {label: "Credits charged", data: data.credits, backgroundColor: "#3b5bdb", yAxisID: "credits"},
        {label: "Calls", data: data.requests, type: "line", borderColor: "#e8590c", yAxisID: "calls"}
      ]
    },
    options: {
      animation: false,
      maintainAspectRatio: false,
      scales: {credits: {position: "left", beginAtZero: true}, calls: {position: "right", beginAtZero: true,
               grid: {drawOnChartArea: false}}}
    }
  });
});
