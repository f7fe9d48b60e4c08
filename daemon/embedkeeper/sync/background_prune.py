"""The prune after deletes, on a connection of its own while the pass embeds: of the keys the
delete log recorded when it accounts for every delete (store/pass_io/delete_log.py), else of every
key.

Finding which documents were deleted reads every key of the model's vectors (an anti-join against
the source's key: about 0.3 s per million vectors here); the change walk does not need its result,
so it need not wait for it. The two touch different rows: the walk writes vectors only for
documents that exist (the fence), the prune deletes only those of documents that do not.

If the prune fails, nothing is lost: its fingerprint is not recorded, so the next pass prunes
again. The failure is logged, not raised, so that it does not cost the pass its embeddings.
"""

from __future__ import annotations

import contextvars
import logging
import threading

from embedkeeper.errors import EmbedkeeperError
from embedkeeper.logs import event
from embedkeeper.store.db import connect, mapped_errors
from embedkeeper.store.pair.pair import Pair
from embedkeeper.store.pass_io.delete_log import prune_from_log
from embedkeeper.store.pass_io.prune import prune_deleted
from embedkeeper.store.state import sync_state
from embedkeeper.sync.prepare import PassPlan

log = logging.getLogger(__name__)


class BackgroundPrune:
    def __init__(
        self,
        url: str,
        timeout_s: float,
        pair: Pair,
        plan: PassPlan,
    ) -> None:
        self.url, self.timeout_s = url, timeout_s
        self.pair, self.fingerprint = pair, plan.fingerprint
        self.log_position, self.from_log = plan.log_position, plan.from_log
        self.deleted = 0
        self.saved = False
        self.thread = threading.Thread(
            target=contextvars.copy_context().run, args=(self._run,), daemon=True
        )
        self.thread.start()

    def _run(self) -> None:
        try:
            with connect(self.url, timeout_s=self.timeout_s, async_commit=True) as conn:
                if self.from_log is not None:
                    with mapped_errors("pruning logged deletes"):
                        logged = prune_from_log(conn, self.pair, self.fingerprint, self.from_log)
                    self.deleted, self.saved = logged or 0, logged is not None
                    return
                pruned = prune_deleted(conn, self.pair)
                if pruned is None:  # a peer is pruning: it covers us
                    return
                self.deleted = pruned
                with mapped_errors("recording the sync state"):
                    sync_state.save_fingerprint(
                        conn, self.pair, self.fingerprint, self.log_position
                    )
                self.saved = True
        except EmbedkeeperError as exc:
            event(log, logging.WARNING, "prune_failed", model=self.pair.model_name, detail=str(exc))

    def join(self) -> tuple[int, bool]:
        """Wait for it: the documents it deleted, and whether it recorded its fingerprint (then
        the caller re-reads the sync state that the watermark's compare-and-set expects)."""
        self.thread.join()
        return self.deleted, self.saved
