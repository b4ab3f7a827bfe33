"""Refusals of POST /wehub/upload: error codes and their error_reason in zh-CN and English.

The numbers continue the 14xx range of gateway/errors.py (uploads); never renumber one, only add.
"""

from __future__ import annotations

from gateway.errors import ErrorCode
from wehub.i18n import Catalog

NOT_MULTIPART = ErrorCode(1411, "upload_not_multipart", 400)
MALFORMED_MULTIPART = ErrorCode(1412, "upload_malformed_multipart", 400)
MISSING_PART = ErrorCode(1413, "upload_missing_part", 400)
EMPTY_FILE = ErrorCode(1414, "upload_empty_file", 400)
FILE_TOO_LARGE = ErrorCode(1415, "upload_file_too_large", 413)
UNSAFE_FILENAME = ErrorCode(1416, "upload_unsafe_filename", 400)
MISSING_IDENTITY = ErrorCode(1417, "upload_missing_identity", 401)
INVALID_PART = ErrorCode(1418, "upload_invalid_part", 400)
STORAGE_UNAVAILABLE = ErrorCode(1419, "upload_storage_unavailable", 503)

UPLOAD_CODES: tuple[ErrorCode, ...] = (
    NOT_MULTIPART, MALFORMED_MULTIPART, MISSING_PART, EMPTY_FILE, FILE_TOO_LARGE, UNSAFE_FILENAME,
    MISSING_IDENTITY, INVALID_PART, STORAGE_UNAVAILABLE,
)

CATALOG = Catalog({
    "upload_not_multipart": {
        "en": "the upload has Content-Type {value}: expected multipart/form-data with a boundary",
        "zh-CN": "上传请求的 Content-Type 为 {value}：应为带 boundary 的 multipart/form-data",
    },
    "upload_malformed_multipart": {
        "en": "the multipart body cannot be parsed ({detail}): expected parts file_index and file",
        "zh-CN": "无法解析 multipart 请求体（{detail}）：应包含 file_index 和 file 两个部分",
    },
    "upload_missing_part": {
        "en": "the upload has no {part} part: expected a text part file_index and a file part file",
        "zh-CN": "上传请求缺少 {part} 部分：应包含文本部分 file_index 和文件部分 file",
    },
    "upload_empty_file": {
        "en": "the file part of file_index {file_index} is empty: expected the bytes of the file",
        "zh-CN": "file_index {file_index} 的文件部分为空：应包含文件内容",
    },
    "upload_file_too_large": {
        "en": "the file has more than {limit} bytes, the upload limit: files this large are not accepted",
        "zh-CN": "文件超过上传上限 {limit} 字节：不接受这么大的文件",
    },
    "upload_unsafe_filename": {
        "en": "the file name {value} is invalid: expected a plain name without folders (no /, \\ or ..)",
        "zh-CN": "文件名 {value} 无效：应为不含目录的文件名（不能含 /、\\ 或 ..）",
    },
    "upload_missing_identity": {
        "en": "the upload names no {field}: add ?appid=...&wxid=...&token=... to the upload URL "
              "configured in WeHub",
        "zh-CN": "上传请求缺少 {field}：请在 WeHub 中配置的上传地址后加上 ?appid=...&wxid=...&token=...",
    },
    "upload_invalid_part": {
        "en": "the {part} part is invalid: {value}, expected {expected}",
        "zh-CN": "{part} 部分无效：{value}，应为 {expected}",
    },
    "upload_storage_unavailable": {
        "en": "the server cannot store files right now ({detail}): upload again later",
        "zh-CN": "服务器暂时无法保存文件（{detail}）：请稍后重新上传",
    },
})
