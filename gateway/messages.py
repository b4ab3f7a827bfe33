"""The error_reason texts of the gateway in zh-CN and English, keyed by the error code's name."""

from __future__ import annotations

from wehub.i18n import Catalog

CATALOG = Catalog(
    {
        "invalid_json": {
            "en": "the body is not valid JSON ({detail}): expected one JSON object",
            "zh-CN": "请求体不是合法的 JSON（{detail}）：应为一个 JSON 对象",
        },
        "invalid_utf8": {
            "en": "the body is not valid UTF-8 (byte {position}): expected UTF-8 encoded JSON",
            "zh-CN": "请求体不是合法的 UTF-8（第 {position} 字节）：应为 UTF-8 编码的 JSON",
        },
        "not_an_object": {
            "en": "the body is {value}: expected a JSON object with action, appid, wxid and data",
            "zh-CN": "请求体是 {value}：应为包含 action、appid、wxid 和 data 的 JSON 对象",
        },
        "invalid_action": {
            "en": 'field action: {value} is invalid, expected a non-empty string such as "report_new_msg"',
            "zh-CN": '字段 action 的值 {value} 无效：应为非空字符串，例如 "report_new_msg"',
        },
        "invalid_envelope": {
            "en": "field {field}: {value} is invalid, expected {expected}",
            "zh-CN": "字段 {field} 的值 {value} 无效：应为 {expected}",
        },
        # NOTE: {expected} comes from schemas.normalize in English, also inside the zh-CN text.
        "invalid_field": {
            "en": "field {field}: {value} is invalid, expected {expected}",
            "zh-CN": "字段 {field} 的值 {value} 无效：应为 {expected}",
        },
        "body_too_large": {
            "en": "the body of {action} has {size} bytes, more than the limit of {limit} bytes",
            "zh-CN": "{action} 的请求体有 {size} 字节，超过上限 {limit} 字节",
        },
        "record_too_large": {
            "en": "the {action} event encodes to {size} bytes, "
            "more than the Kafka record limit of {limit} bytes",
            "zh-CN": "{action} 事件编码后有 {size} 字节，超过 Kafka 单条记录上限 {limit} 字节",
        },
        "unknown_appid": {
            "en": "appid {value} is not configured on this server: check the appid in the WeHub console",
            "zh-CN": "服务器未配置 appid {value}：请检查 WeHub 控制台中的 appid",
        },
        "bad_token": {
            "en": "the URL token for appid {appid} is missing or wrong: "
            "use the callback URL given for this appid",
            "zh-CN": "appid {appid} 的 URL 令牌缺失或错误：请使用为该 appid 提供的回调地址",
        },
        "wxid_not_whitelisted": {
            "en": "wxid {wxid} is not on the whitelist of appid {appid}: add it to the wxids of this appid "
            "in the accounts file, then log in again",
            "zh-CN": "wxid {wxid} 不在 appid {appid} 的白名单中："
            "请将它加入账号文件中该 appid 的 wxids，然后重新登录",
        },
        "kafka_unavailable": {
            "en": "the server cannot store events right now ({detail}): WeHub will send again, nothing to do",
            "zh-CN": "服务器暂时无法保存事件（{detail}）：WeHub 会重新发送，无需操作",
        },
        "overloaded": {
            "en": "the server has {limit} requests waiting for storage already: try again shortly",
            "zh-CN": "服务器已有 {limit} 个请求在等待保存：请稍后重试",
        },
        "upload_unavailable": {
            "en": "file uploads are not enabled on this server",
            "zh-CN": "此服务器未启用文件上传",
        },
        "admin_api_disabled": {
            "en": "POST /api/tasks is disabled: set WEHUB_ADMIN_TOKEN on the gateway to enable it",
            "zh-CN": "POST /api/tasks 已关闭：请在网关上设置 WEHUB_ADMIN_TOKEN 以启用",
        },
        "bad_admin_token": {
            "en": "the Authorization header is missing or its Bearer token is wrong",
            "zh-CN": "缺少 Authorization 请求头，或其中的 Bearer 令牌错误",
        },
        "accounts_unreadable": {
            "en": "the accounts file cannot be read: fix it on the gateway, then submit again",
            "zh-CN": "无法读取账号文件：请在网关上修正后重新提交",
        },
        "task_source_failed": {
            "en": "the task service failed ({detail}): the next pull_task will try again",
            "zh-CN": "任务服务出错（{detail}）：下一次 pull_task 会重试",
        },
        "not_found": {
            "en": "there is nothing at {path}: WeHub callbacks go to POST /wehub",
            "zh-CN": "{path} 不存在：WeHub 回调地址为 POST /wehub",
        },
        "method_not_allowed": {
            "en": "{method} is not allowed on {path}: use POST",
            "zh-CN": "{path} 不允许 {method}：请使用 POST",
        },
        "internal_error": {
            "en": "the server failed unexpectedly (event {event_id}): WeHub will send again; "
            "if it persists, give the event id to the operator",
            "zh-CN": "服务器意外出错（事件 {event_id}）：WeHub 会重新发送；如持续出现，请把事件 id 告知运维",
        },
    }
)
