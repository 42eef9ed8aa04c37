"""mcp actions without a server: the pools' `mcpServers`, what is denied, argument
substitution, the downstream key, what the audit keeps and how a tool's result reads."""

from __future__ import annotations

from typing import Any

import pytest
from mcp_types import CallToolResult, TextContent

from reynolds.adapters.actions.mcp import tool_result
from reynolds.core.audit import describe_action
from reynolds.core.downstreams import downstream_of
from reynolds.core.mcp_servers import McpHttpServer, McpStdioServer
from reynolds.core.models import McpAction
from reynolds.core.pools import PoolSet
from reynolds.core.substitution import MAX_ARGUMENTS_BYTES, substitute_arguments
from reynolds.errors import ActionDenied, InvalidInput
from reynolds.services.actions import denied

SERVERS: dict[str, Any] = {
    "git": {"command": "mcp-server-git", "args": ["--repository", "/srv/repo"]},
    "tracker": {"url": "http://127.0.0.1:9000/mcp", "tokenFile": "tracker_token.txt"},
    "clock": {"command": "mcp-server-time", "tools": ["get_current_time"], "maxConcurrency": 2},
}


def pools(servers: dict[str, Any] | None = None) -> PoolSet:
    code: dict[str, Any] = {"name": "code"}
    if servers is not None:
        code["mcpServers"] = servers
    return PoolSet.from_mapping({"pools": {"code": code, "plain": {"name": "plain"}}})


def mcp(server: str, tool: str, **arguments: Any) -> McpAction:
    return McpAction.model_validate(
        {"kind": "mcp", "server": server, "tool": tool, "arguments": arguments}
    )


def test_a_pool_declares_stdio_and_http_servers_by_name() -> None:
    servers = pools(SERVERS).pools["code"].mcp_servers

    assert isinstance(servers["git"], McpStdioServer)
    assert servers["git"].args == ["--repository", "/srv/repo"]
    assert servers["git"].max_concurrency == 8 and servers["git"].tools is None
    assert isinstance(servers["tracker"], McpHttpServer)
    assert servers["tracker"].token_file == "tracker_token.txt"
    assert servers["clock"].tools == ["get_current_time"]
    assert servers["clock"].max_concurrency == 2


@pytest.mark.parametrize(
    ("server", "named"),
    [
        ({"command": "x", "url": "http://h/mcp"}, "mcpServers"),
        ({"url": "ftp://h/mcp"}, "mcpServers"),
        ({"url": "http://h/mcp", "tokenFile": "../api_token.txt"}, "mcpServers"),
        ({"command": "x", "env": {"LD_PRELOAD": "/tmp/x.so"}}, "mcpServers"),
        ({"command": "x", "maxConcurrency": 0}, "mcpServers"),
    ],
)
def test_a_bad_server_declaration_is_refused_naming_it(server: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidInput, match=named):
        pools({"bad": server})


def test_a_server_name_an_action_could_not_give_is_refused() -> None:
    with pytest.raises(InvalidInput, match="server name"):
        pools({"has space": {"command": "x"}})


def test_an_undeclared_server_is_denied_naming_the_declared_ones() -> None:
    set_ = pools(SERVERS)

    refused = denied(mcp("jira", "search"), set_.pools["code"], "code")
    elsewhere = denied(mcp("git", "git_log"), set_.pools["plain"], "plain")

    assert refused is not None and refused.reason == "denied"
    assert "'jira' is not declared for the code pool" in refused.error
    assert "clock, git, tracker" in refused.error
    assert elsewhere is not None and elsewhere.reason == "denied"
    assert "(declared: none)" in elsewhere.error


def test_a_tool_outside_the_servers_list_is_denied_and_one_inside_is_not() -> None:
    code = pools(SERVERS).pools["code"]

    outside = denied(mcp("clock", "convert_time"), code, "code")

    assert outside is not None and outside.reason == "denied"
    assert "'convert_time'" in outside.error and "tools list" in outside.error
    assert denied(mcp("clock", "get_current_time"), code, "code") is None
    assert denied(mcp("git", "anything"), code, "code") is None


def test_placeholders_are_substituted_in_every_string_at_any_depth() -> None:
    values = {"component": "api", "taskId": "t1", "step": "-s"}
    arguments = {
        "path": "/repos/{component}",
        "nested": {"list": ["{taskId}", 3, None, {"deep": "{step}/{unknown}"}]},
        "{component}": "keys stay as written",
        "count": 2,
    }

    out = substitute_arguments(arguments, values)

    assert out == {
        "path": "/repos/api",
        "nested": {"list": ["t1", 3, None, {"deep": "-s/{unknown}"}]},
        "{component}": "keys stay as written",
        "count": 2,
    }
    assert arguments["path"] == "/repos/{component}"


def test_arguments_that_would_grow_past_the_limit_are_refused_before_they_are_built() -> None:
    arguments = {"many": ["{component}"] * 1000}
    values = {"component": "x" * (MAX_ARGUMENTS_BYTES // 1000 + 1)}

    with pytest.raises(ActionDenied, match="after substitution") as caught:
        substitute_arguments(arguments, values)
    assert caught.value.details["reason"] == "too_long"


def test_the_downstream_of_an_mcp_action_is_its_servers_name() -> None:
    assert downstream_of(mcp("git", "git_log")) == "mcp:git"


def test_the_audit_keeps_the_server_and_tool_and_never_the_arguments() -> None:
    described = describe_action(mcp("tracker", "create_issue", token="hunter2-secret"))

    assert described["argv"] == ["tracker", "create_issue"]
    assert "hunter2" not in repr(described)


def test_a_tools_result_is_its_text_then_its_structured_content_as_json() -> None:
    result = CallToolResult(
        content=[TextContent(text="two files changed")], structured_content={"files": 2}
    )

    read = tool_result(result, cap_bytes=1024)

    assert read.ok and read.output == 'two files changed\n{"files": 2}'
    assert read.output_bytes == len(read.output.encode())


def test_an_error_result_is_a_failure_with_its_text() -> None:
    result = CallToolResult(content=[TextContent(text="no such branch")], is_error=True)

    read = tool_result(result, cap_bytes=1024)

    assert not read.ok and read.error == "no such branch" and read.reason is None


def test_a_long_result_is_cut_at_the_cap_and_says_so() -> None:
    result = CallToolResult(content=[TextContent(text="é" * 2000)])

    read = tool_result(result, cap_bytes=1001)

    assert read.truncated and read.output_bytes == 4000
    assert read.output.startswith("é" * 500 + "\n[truncated: showing the first 1001 of 4000")
