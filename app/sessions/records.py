"""A session's record: which model and revision it belongs to, whose it is (a fingerprint of the
caller's API key, never the key), when it expires, and its state (`models.session_state` bytes).

Its byte form, for Redis, is parsed here, never unpickled: a magic word, the length of a JSON
header, the header, then the state's safetensors bytes."""
from __future__ import annotations

import hashlib
import json
import secrets
import struct
from dataclasses import asdict, dataclass

MAGIC = b"RNNSESS1"
# 32 random bytes: an id nobody guesses, whatever the number of live sessions.
ID_BYTES = 32


def new_session_id() -> str:
    return "sess_" + secrets.token_urlsafe(ID_BYTES)


def owner_fingerprint(api_key: str | None) -> str:
    """Whose sessions: a digest of the caller's key ("" when the service has no keys)."""
    return "" if not api_key else hashlib.sha256(api_key.encode()).hexdigest()[:32]


class RecordFormatError(ValueError):
    pass


@dataclass
class SessionRecord:
    id: str
    model_id: str
    revision: str
    owner: str
    state: bytes
    tokens_read: int
    expires_at: float  # wall-clock seconds

    @property
    def nbytes(self) -> int:
        return len(self.state)

    def to_bytes(self) -> bytes:
        header = json.dumps({key: value for key, value in asdict(self).items() if key != "state"}).encode()
        return MAGIC + struct.pack("<I", len(header)) + header + self.state

    @classmethod
    def from_bytes(cls, data: bytes) -> "SessionRecord":
        try:
            if not data.startswith(MAGIC):
                raise RecordFormatError("not a session record")
            (length,) = struct.unpack("<I", data[len(MAGIC) : len(MAGIC) + 4])
            start = len(MAGIC) + 4
            header = json.loads(data[start : start + length])
            return cls(str(header["id"]), str(header["model_id"]), str(header["revision"]), str(header["owner"]),
                       bytes(data[start + length :]), int(header["tokens_read"]), float(header["expires_at"]))
        except RecordFormatError:
            raise
        except (ValueError, KeyError, TypeError, struct.error) as error:
            raise RecordFormatError(f"not a session record ({error})") from error
