"""Where `make run` sends payments: Stripe when STRIPE_SECRET_KEY is set (nothing local starts), otherwise a
local fake Stripe (localstripe, devstack/local_stripe.py) whose webhooks reach our edge, signed with a
secret generated once per data directory. Shared by the launcher, the tests' stacks and the operator CLI."""

from __future__ import annotations

from pathlib import Path

from common.service_auth import ensure_token_file

#: localstripe accepts any key of the right shape; these say plainly that they are not Stripe's.
LOCAL_SECRET_KEY = "sk_test_localstripe"
LOCAL_PUBLISHABLE_KEY = "pk_test_localstripe"
LOCALSTRIPE_BANNER = (
    "⚠️  STRIPE_SECRET_KEY is not set: payments go to a LOCAL FAKE STRIPE (localstripe) at {url} — no real "
    "money moves. Test cards: 4242 4242 4242 4242 pays, 4000 0000 0000 0341 is declined. Set STRIPE_SECRET_KEY "
    "(and STRIPE_WEBHOOK_SECRET) to take real payments."
)


def webhook_secret(data_dir: Path) -> str:
    """This data directory's local webhook signing secret (created on first use, 0600, never printed)."""
    return "whsec_" + ensure_token_file(data_dir / "localstripe" / "webhook-secret").read_text().strip()


def local_stripe_env(data_dir: Path, stripe_port: int, edge_port: int) -> tuple[dict[str, str], dict[str, str]]:
    """(localstripe's environment, billing's Stripe settings) for a local fake Stripe on `stripe_port` whose
    webhooks go to the edge on `edge_port`."""
    secret = webhook_secret(data_dir)
    localstripe = {
        "LOCALSTRIPE_PORT": str(stripe_port),
        "LOCALSTRIPE_WEBHOOK_URL": f"http://127.0.0.1:{edge_port}/api/webhooks/stripe",
        "STRIPE_WEBHOOK_SECRET": secret,
    }
    billing = {
        "STRIPE_TEST_CARDS": "1",
        "STRIPE_SECRET_KEY": LOCAL_SECRET_KEY,
        "STRIPE_PUBLISHABLE_KEY": LOCAL_PUBLISHABLE_KEY,
        "STRIPE_API_BASE": f"http://127.0.0.1:{stripe_port}",
        "STRIPE_WEBHOOK_SECRET": secret,
    }
    return localstripe, billing


def discover(data_dir: Path) -> dict[str, str] | None:
    """Billing's Stripe settings for the local fake `make run` started on this data directory (it leaves its
    address there), so operator commands find it by themselves, as they find the embedded database; None if
    none was started here."""
    folder = data_dir / "localstripe"
    address, secret = folder / "api-base", folder / "webhook-secret"
    if not (address.exists() and secret.exists()):
        return None
    return {"STRIPE_TEST_CARDS": "1", "STRIPE_SECRET_KEY": LOCAL_SECRET_KEY,
            "STRIPE_API_BASE": address.read_text().strip(),
            "STRIPE_WEBHOOK_SECRET": "whsec_" + secret.read_text().strip()}
