"""The one image file of a multipart form body, parsed with python-multipart.

A pure function over bytes, importable alone: the node runs it in its parser process for large
bodies (:mod:`edgeinfer.serve.json_worker`), in a thread for small ones.
"""

from __future__ import annotations

import io
from typing import Any

from edgeinfer.serve.json_tensors import BadRequestError

__all__ = ["MAX_FIELDS", "multipart_file"]

#: form fields accepted beside the file
MAX_FIELDS = 8


def multipart_file(body: bytes, content_type: str) -> bytes:
    """The bytes of the one file field ``file`` of a multipart body; BadRequestError (400)
    for a malformed body, another field name, more than one file or too many fields."""
    from python_multipart import parse_form
    from python_multipart.exceptions import FormParserError

    files: list[Any] = []
    fields: list[Any] = []
    try:
        parse_form({"Content-Type": content_type.encode("latin-1"),
                    "Content-Length": str(len(body)).encode()}, io.BytesIO(body),
                   fields.append, files.append)
    except (FormParserError, ValueError, UnicodeEncodeError) as exc:
        raise BadRequestError(f"bad multipart body ({str(exc)[:80]}): send the image as the "
                              "multipart field 'file'") from exc
    try:
        if len(files) > 1 or len(fields) > MAX_FIELDS:
            raise BadRequestError(f"the multipart body has {len(files)} files and "
                                  f"{len(fields)} fields: send one image as the field 'file'")
        if not files or files[0].field_name != b"file":
            raise BadRequestError("send the image as the multipart field 'file'")
        stream = files[0].file_object
        stream.seek(0)
        return stream.read()
    finally:
        for f in files:  # a large part went to a temporary file
            f.close()
