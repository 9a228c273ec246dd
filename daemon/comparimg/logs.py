"""Log lines on stderr (journald): one line per event, `key=value` text or JSON, by configuration."""

from __future__ import annotations

import json
import logging
import time


class LineFormatter(logging.Formatter):
    """One line per event: `time level logger message` (messages are already key=value), or JSON."""

    def __init__(self, as_json: bool):
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage().replace("\n", " ")
        if record.exc_info:
            message += " traceback=" + json.dumps(self.formatException(record.exc_info))
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        stamp += f".{int(record.msecs):03d}Z"
        if not self.as_json:
            return f"{stamp} {record.levelname.lower()} {record.name} {message}"
        return json.dumps(
            {"time": stamp, "level": record.levelname.lower(), "logger": record.name, "message": message}
        )


def configure_logging(format_name: str, level: str) -> None:
    """Given `logging.format` ("text" or "json") and `logging.level`, send every log line to stderr."""
    handler = logging.StreamHandler()
    handler.setFormatter(LineFormatter(format_name == "json"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # watchdog logs every lost event at warning level; ours says the same thing once, with the action.
    logging.getLogger("watchdog").setLevel(logging.ERROR)
