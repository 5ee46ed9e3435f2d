"""`python -m devstack.local_stripe`: localstripe (a stateful fake Stripe), as `make run` and the tests run it.

Three things localstripe does not do by itself: keep its state under DATA_DIR (it pickles everything to
/tmp/localstripe.pickle, which two stacks on one machine would share), bind only to 127.0.0.1 (it listens
on every address), and know our webhook endpoint (registered here at start, since its webhook list is not
part of the saved state). Its webhooks are signed with STRIPE_WEBHOOK_SECRET, as Stripe signs them with an
endpoint's secret.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

from aiohttp import web
from localstripe import resources
from localstripe.server import app
from localstripe.webhooks import register_webhook

from common.logging import setup_logging

log = logging.getLogger("localstripe")


def _keep_state_in(path: Path) -> None:
    def load(store: resources.Store) -> None:
        if path.exists():
            with path.open("rb") as f:
                store.clear()
                store.update(pickle.load(f))  # our own file, written below

    def dump(store: resources.Store) -> None:
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as f:
            pickle.dump(dict(store), f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)

    resources.Store.try_load_from_disk = load  # type: ignore[method-assign]
    resources.Store.dump_to_disk = dump  # type: ignore[method-assign]


def main() -> None:
    setup_logging("localstripe", os.environ.get("LOG_LEVEL", "INFO"), os.environ.get("LOG_FORMAT", "json"))
    state = Path(os.environ.get("DATA_DIR", ".data")).resolve() / "localstripe"
    state.mkdir(parents=True, exist_ok=True)
    _keep_state_in(state / "store.pickle")
    resources.store.try_load_from_disk()
    register_webhook("fsg", os.environ["LOCALSTRIPE_WEBHOOK_URL"], os.environ["STRIPE_WEBHOOK_SECRET"], None)
    port = int(os.environ.get("LOCALSTRIPE_PORT", "8420"))
    (state / "api-base").write_text(f"http://127.0.0.1:{port}\n")  # for operator commands (common/local_stripe.py)
    log.info("localstripe on 127.0.0.1:%d, webhooks to %s", port, os.environ["LOCALSTRIPE_WEBHOOK_URL"])
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
