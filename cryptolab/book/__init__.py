"""The order book, I/O-free: its rows (diffs, snapshots, quotes, gaps), an exact L2 book, and
the Binance procedure that keeps a local book in step with the depth stream.

Every part of cryptolab that touches a book uses these: the capture (to follow the stream and
see a loss), the local exchange (its own book), storage (the rows it writes) and the readers
(a book rebuilt from storage).
"""

from .model import BookGap, BookRow, BookSnapshot, BookTop, DepthDiff, Level, Quote
from .state import OrderBook
from .sync import BookSync, DiffResult, SnapshotResult

__all__ = ["BookGap", "BookRow", "BookSnapshot", "BookSync", "BookTop", "DepthDiff", "DiffResult", "Level",
           "OrderBook", "Quote", "SnapshotResult"]
