"""Units of the security layer: key files, the clients directory, the exposure rule, the
configuration's security options, audit redaction and the request limits."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from circus.config import ConfigError, load_config
from circus.protocol import ErrorCode, ProtocolError, Role
from circus.protocol.limits import (MAX_DEPTH, MAX_NAME, MAX_PATTERN, MAX_WAYS, check_depth, check_name,
                                    compile_match, name_problem)
from circus.security.audit import MAX_TEXT, REDACTED, audit_record, describe, redact
from circus.security.exposure import exposed, is_local, refusal
from circus.security.keyring import SELF_NAME, Keyring
from circus.security.keys import (ClientKeys, KeyFileError, load_keypair, load_public, secret_file_warning,
                                  write_keypair)

# -- key files ----------------------------------------------------------------------------------


def test_write_keypair_round_trip_and_modes(tmp_path):
    public, secret = write_keypair(str(tmp_path / "keys"), "alice")
    keys = tmp_path / "keys"
    assert (public, secret) == (str(keys / "alice.key"), str(keys / "alice.key_secret"))
    assert stat.S_IMODE(os.stat(public).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "keys").st_mode) == 0o700
    pair = load_keypair(secret)
    assert len(pair.public) == 40 and len(pair.secret) == 40
    assert zmq.curve_public(pair.secret) == pair.public
    assert load_public(public).public == pair.public
    assert load_public(secret).public == pair.public       # a secret file has the public key too
    assert load_public(public).secret is None
    assert "secret-key" not in Path(public).read_text()
    assert secret_file_warning(secret) is None
    assert not [n for n in os.listdir(tmp_path / "keys") if ".tmp" in n]


def test_write_keypair_keeps_existing_files_unless_forced(tmp_path):
    _, secret = write_keypair(str(tmp_path), "node")
    before = load_keypair(secret).public
    with pytest.raises(FileExistsError, match="node.key"):
        write_keypair(str(tmp_path), "node")
    assert load_keypair(secret).public == before
    write_keypair(str(tmp_path), "node", force=True)
    assert load_keypair(secret).public != before


@pytest.mark.parametrize("name", ["", "a/b", ".hidden", "tab\there"])
def test_write_keypair_refuses_bad_names(tmp_path, name):
    with pytest.raises(ValueError, match="invalid key name"):
        write_keypair(str(tmp_path), name)


def test_secret_file_readable_by_others_is_warned_about(tmp_path):
    _, secret = write_keypair(str(tmp_path), "node")
    os.chmod(secret, 0o640)
    warning = secret_file_warning(secret)
    assert warning and secret in warning and "0640" in warning and "chmod 600" in warning


@pytest.mark.parametrize("content, expected", [
    ("", "no secret-key in this file"),
    ("just some text\n", "no secret-key in this file"),
    ('curve\n    public-key = "short"\n    secret-key = "short"\n', "secret-key is not a 40-character Z85"),
    ('curve\n    public-key = "' + "~" * 40 + '"\n    secret-key = "' + "~" * 40 + '"\n',
     "secret-key is not a 40-character Z85"),
])
def test_malformed_secret_files_are_refused_naming_the_file(tmp_path, content, expected):
    path = tmp_path / "bad.key_secret"
    path.write_text(content)
    with pytest.raises(KeyFileError) as info:
        load_keypair(str(path))
    assert str(path) in str(info.value) and expected in str(info.value)


def test_malformed_public_files_are_refused_naming_the_file(tmp_path):
    path = tmp_path / "bad.key"
    path.write_text('curve\n    public-key = "tooshort"\n')
    with pytest.raises(KeyFileError, match=f"{path}: the public-key is not a 40-character Z85"):
        load_public(str(path))
    path.write_text("metadata\n")
    with pytest.raises(KeyFileError, match=f"{path}: no public-key"):
        load_public(str(path))
    with pytest.raises(KeyFileError, match="no such key file"):
        load_public(str(tmp_path / "missing.key"))
    with pytest.raises(KeyFileError, match="is a directory"):
        load_public(str(tmp_path))


def test_secret_file_whose_public_key_does_not_match_is_refused(tmp_path):
    _, secret_a = write_keypair(str(tmp_path), "a")
    public_b, _ = write_keypair(str(tmp_path), "b")
    other = load_public(public_b).public.decode()
    lines = [f'    public-key = "{other}"' if "public-key" in line else line
             for line in Path(secret_a).read_text().splitlines()]
    Path(secret_a).write_text("\n".join(lines) + "\n")
    with pytest.raises(KeyFileError, match="its public key does not belong to its secret key") as info:
        load_keypair(secret_a)
    assert secret_a in str(info.value)


def test_public_only_file_given_as_keypair_is_refused(tmp_path):
    public, _ = write_keypair(str(tmp_path), "a")
    with pytest.raises(KeyFileError, match="holds only a public key; give the .key_secret file") as info:
        load_keypair(public)
    assert public in str(info.value)
    with pytest.raises(KeyFileError, match="holds only a public key"):
        ClientKeys.load(public, public)


def test_client_keys_load_takes_the_servers_public_key(tmp_path):
    _, client = write_keypair(str(tmp_path), "client")
    server_public, _ = write_keypair(str(tmp_path), "server")
    keys = ClientKeys.load(client, server_public)
    assert keys.public == load_keypair(client).public
    assert keys.secret == load_keypair(client).secret
    assert keys.server == load_public(server_public).public


# -- the clients directory ----------------------------------------------------------------------


def _clients(tmp_path: Path, **roles: list[str]) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path / "clients"
    keys: dict[str, bytes] = {}
    for role, names in roles.items():
        for name in names:
            public, secret = write_keypair(str(tmp_path / "made"), name)
            (root / role).mkdir(parents=True, exist_ok=True)
            os.replace(public, root / role / f"{name}.key")
            keys[name] = load_keypair(secret).public
    return root, keys


def test_keyring_gives_each_key_its_role_and_knows_the_node(tmp_path):
    root, keys = _clients(tmp_path, admin=["alice"], operator=["deploy", "ci"], readonly=["grafana"])
    _, node_secret = write_keypair(str(tmp_path / "node"), "node")
    node = load_keypair(node_secret).public
    ring = Keyring.load(str(root), node)
    assert ring.warnings == ()
    assert ring.lookup(keys["alice"]).role is Role.ADMIN
    assert ring.lookup(keys["deploy"].decode()).role is Role.OPERATOR
    assert ring.lookup(keys["ci"]).name == "ci"
    grafana = ring.lookup(keys["grafana"])
    assert (grafana.name, grafana.role, grafana.role_name) == ("grafana", Role.READONLY, "readonly")
    assert ring.lookup(node).name == SELF_NAME and ring.lookup(node).role is Role.ADMIN
    assert ring.lookup(zmq.curve_keypair()[0]) is None
    assert ring.lookup(None) is None and ring.lookup("") is None
    assert ring.summary() == "1 admin, 2 operator, 1 readonly"


def test_keyring_refuses_a_key_in_two_roles(tmp_path):
    root, _ = _clients(tmp_path, admin=["alice"])
    (root / "readonly").mkdir()
    (root / "readonly" / "alice-too.key").write_bytes((root / "admin" / "alice.key").read_bytes())
    with pytest.raises(KeyFileError) as info:
        Keyring.load(str(root))
    message = str(info.value)
    assert str(root / "readonly" / "alice-too.key") in message
    assert "admin/alice.key" in message and "a key has one role" in message


def test_keyring_warns_about_secret_files_unknown_dirs_and_stray_files(tmp_path):
    root, keys = _clients(tmp_path, operator=["deploy"])
    _, secret = write_keypair(str(root / "operator"), "oops")
    (root / "superuser").mkdir()
    (root / "notes.txt").write_text("x")
    (root / "operator" / "README").write_text("x")
    ring = Keyring.load(str(root))
    text = "\n".join(ring.warnings)
    assert f"{secret}: a SECRET key in the clients directory" in text
    assert f"{root / 'superuser'}: ignored (roles are admin, operator, readonly)" in text
    assert f"{root / 'notes.txt'}: ignored" in text
    assert f"{root / 'operator' / 'README'}: ignored (not a .key file)" in text
    # the secret file was skipped, but its public half (oops.key) is a normal operator key
    assert {i.name for i in ring.keys.values()} == {"deploy", "oops"}
    assert ring.lookup(keys["deploy"]).role is Role.OPERATOR


def test_keyring_errors_name_the_file(tmp_path):
    with pytest.raises(KeyFileError, match="not a directory"):
        Keyring.load(str(tmp_path / "nope"))
    root, _ = _clients(tmp_path, admin=["alice"])
    (root / "admin" / "broken.key").write_text("garbage\n")
    with pytest.raises(KeyFileError, match=f"{root / 'admin' / 'broken.key'}: no public-key"):
        Keyring.load(str(root))


def test_keyring_notes_the_nodes_own_key_in_a_role_dir(tmp_path):
    root = tmp_path / "clients"
    (root / "readonly").mkdir(parents=True)
    public, secret = write_keypair(str(tmp_path), "node")
    os.link(public, root / "readonly" / "node.key")
    own = load_keypair(secret).public
    ring = Keyring.load(str(root), own)
    assert ring.lookup(own).role is Role.ADMIN
    assert any("own public key" in w for w in ring.warnings)


# -- exposure -----------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint, local", [
    ("tcp://127.0.0.1:1", True),
    ("tcp://127.1.2.3:5555", True),
    ("tcp://[::1]:1", True),
    ("tcp://localhost:1", True),
    ("tcp://LOCALHOST:1", True),
    ("ipc:///tmp/circus.sock", True),
    ("ipc://@abstract", True),
    ("inproc://x", True),
    ("tcp://*:1", False),
    ("tcp://0.0.0.0:1", False),
    ("tcp://[::]:1", False),
    ("tcp://eth0:1", False),
    ("tcp://10.0.0.7:1", False),
    ("tcp://[fe80::1]:1", False),
    ("tcp://host.example:1", False),
    ("tcp://127.0.0.1.example:1", False),
    ("tcp://:1", False),
    ("tcp://127.0.0.1;0.0.0.0:1", False),       # source;destination: the destination counts
    ("pgm://eth0;239.0.0.1:1", False),
    ("ws://127.0.0.1:1", False),                # unknown transports are not assumed local
])
def test_is_local(endpoint, local):
    assert is_local(endpoint) is local


def test_exposed_and_refusal():
    pairs = [("endpoint", "tcp://0.0.0.0:5555"), ("pubsub_endpoint", "ipc:///x"),
             ("stats_endpoint", None), ("other", "tcp://127.0.0.1:1")]
    assert exposed(pairs) == [("endpoint", "tcp://0.0.0.0:5555")]
    text = refusal("tcp://0.0.0.0:5555")
    assert "tcp://0.0.0.0:5555" in text and "curve_secret_key" in text and "insecure = true" in text


# -- the configuration rule ---------------------------------------------------------------------


def _write(tmp_path: Path, body: str) -> str:
    path = tmp_path / "circus.ini"
    path.write_text(body.lstrip())
    return str(path)


def _issues(path: str) -> list:
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    return info.value.issues


def test_network_endpoint_without_curve_is_a_config_error_with_file_and_line(tmp_path):
    path = _write(tmp_path, f"""
[circus]
pubsub_endpoint = ipc://{tmp_path}/p.sock
endpoint = tcp://0.0.0.0:5555

[watcher:a]
cmd = sleep 1
""")
    [issue] = _issues(path)
    assert (issue.file, issue.line, issue.section, issue.key) == (path, 3, "circus", "endpoint")
    assert str(issue).startswith(f"{path}:3: [circus] endpoint: tcp://0.0.0.0:5555 is reachable")
    assert "insecure = true" in issue.reason and "curve_secret_key" in issue.reason


def test_every_exposed_endpoint_is_reported_including_defaults_left_alone(tmp_path):
    path = _write(tmp_path, """
[circus]
endpoint = tcp://*:5555
pubsub_endpoint = tcp://eth0:5556
stats_endpoint = tcp://host.example:5557
""")
    assert {i.key for i in _issues(path)} == {"endpoint", "pubsub_endpoint", "stats_endpoint"}
    ok = _write(tmp_path, "[circus]\nendpoint = tcp://127.0.0.1:5555\n")
    assert load_config(ok, {}).circus.endpoint == "tcp://127.0.0.1:5555"   # the defaults are loopback


def test_insecure_true_accepts_network_endpoints(tmp_path):
    path = _write(tmp_path, "[circus]\nendpoint = tcp://0.0.0.0:5555\ninsecure = true\n")
    cfg = load_config(path, {})
    assert cfg.circus.insecure is True and cfg.circus.endpoint == "tcp://0.0.0.0:5555"


def test_curve_keys_go_together(tmp_path):
    write_keypair(str(tmp_path), "node")
    path = _write(tmp_path, "[circus]\nendpoint = ipc://c.sock\ncurve_secret_key = node.key_secret\n")
    [issue] = _issues(path)
    assert (issue.line, issue.key) == (3, "curve_secret_key")
    assert "needs curve_clients too" in issue.reason
    (tmp_path / "clients").mkdir()
    path = _write(tmp_path, "[circus]\ncurve_clients = clients\n")
    [issue] = _issues(path)
    assert issue.key == "curve_clients" and "needs curve_secret_key too" in issue.reason


def test_curve_config_resolves_paths_and_accepts_network_endpoints(tmp_path):
    write_keypair(str(tmp_path / "keys"), "node")
    (tmp_path / "keys" / "clients" / "admin").mkdir(parents=True)
    path = _write(tmp_path, """
[circus]
endpoint = tcp://0.0.0.0:5555
curve_secret_key = keys/node.key_secret
curve_clients = keys/clients
""")
    cfg = load_config(path, {})
    assert cfg.circus.curve_secret_key == str(tmp_path / "keys" / "node.key_secret")
    assert cfg.circus.curve_clients == str(tmp_path / "keys" / "clients")


def test_bad_curve_key_files_are_refused_naming_them(tmp_path):
    (tmp_path / "clients" / "admin").mkdir(parents=True)
    public, _ = write_keypair(str(tmp_path), "node")
    path = _write(tmp_path, "[circus]\ncurve_secret_key = node.key\ncurve_clients = clients\n")
    [issue] = _issues(path)
    assert (issue.line, issue.key) == (2, "curve_secret_key")
    assert public in issue.reason and "holds only a public key" in issue.reason
    (tmp_path / "clients" / "admin" / "junk.key").write_text("nope\n")
    path = _write(tmp_path, "[circus]\ncurve_secret_key = node.key_secret\ncurve_clients = clients\n")
    [issue] = _issues(path)
    assert (issue.line, issue.key) == (3, "curve_clients")
    assert str(tmp_path / "clients" / "admin" / "junk.key") in issue.reason
    path = _write(tmp_path, "[circus]\ncurve_secret_key = missing.key_secret\ncurve_clients = nowhere\n")
    issues = _issues(path)
    assert [i.key for i in issues] == ["curve_secret_key", "curve_clients"]
    assert "no such key file" in issues[0].reason and "not a directory" in issues[1].reason


# -- audit --------------------------------------------------------------------------------------


def test_redact_hides_secrets_at_any_depth_and_cuts_long_strings():
    props = {"name": "web", "cmd": "x" * 5000,
             "options": {"env": {"DB_PASSWORD": "hunter2", "PATH": "/bin", "nested": [{"api_token": "t"}]},
                         "api_token": "abc", "Secret_Sauce": {"deep": 1}, "numprocesses": 3,
                         "credentials": ["a"], "AUTH_HEADER": "Bearer x", "ssh_key": "k"}}
    out = redact(props)
    env = out["options"]["env"]
    assert env["DB_PASSWORD"] == REDACTED and env["PATH"] == "/bin"
    assert env["nested"] == [{"api_token": REDACTED}]
    for key in ("api_token", "Secret_Sauce", "credentials", "AUTH_HEADER", "ssh_key"):
        assert out["options"][key] == REDACTED
    assert out["options"]["numprocesses"] == 3
    assert out["cmd"].startswith("x" * MAX_TEXT) and out["cmd"].endswith("(5000 characters)")
    assert len(out["cmd"]) < MAX_TEXT + 40
    assert props["options"]["env"]["DB_PASSWORD"] == "hunter2"        # the request is not modified


def test_redact_is_bounded_on_deep_values():
    deep: object = "leaf"
    for _ in range(100):
        deep = [deep]
    out = redact(deep)
    depth = 0
    while isinstance(out, list):
        out, depth = out[0], depth + 1
    assert out == REDACTED and depth <= 42


def test_audit_record_and_its_log_line():
    from circus.security.keyring import Identity
    who = Identity("alice", Role.ADMIN, "rq:rM>}U?" + "x" * 31)
    record = audit_record("web1", who, "10.0.0.7", "add", {"name": "x", "options": {"env": {"TOKEN": "t"}}},
                          {"status": "error", "code": "forbidden", "reason": "nope"}, 0.0042)
    assert record["caller"] == "alice" and record["role"] == "admin" and record["key"] == "rq:rM>}U"
    assert record["properties"]["options"]["env"]["TOKEN"] == REDACTED
    assert (record["status"], record["code"], record["reason"]) == ("error", "forbidden", "nope")
    line = describe(record)
    assert line.startswith("audit: alice (admin) from 10.0.0.7: add(name='x'")
    assert line.endswith("-> forbidden: nope") and "'t'" not in line


# -- limits -------------------------------------------------------------------------------------


def _nested(depth: int) -> object:
    value: object = 1
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def test_check_depth():
    assert check_depth(_nested(MAX_DEPTH))
    assert not check_depth(_nested(MAX_DEPTH + 1))
    assert check_depth({"a": 1, "b": [1, 2, {"c": None}]}, limit=3)
    assert not check_depth({"a": [[[]]]}, limit=3)
    assert check_depth("text") and check_depth(None) and check_depth([])
    assert check_depth(_nested(10_000), limit=10_001)             # no recursion


@pytest.mark.parametrize("name, problem", [
    ("web", None), ("web-1.x_y", None), ("Web Server", None), ("ü" * MAX_NAME, None),
    ("", "is empty"), ("   ", "is empty"), ("x" * (MAX_NAME + 1), "longer than"),
    ("a/b", "path separator"), ("a\\b", "path separator"), ("..", "cannot be"), (".", "cannot be"),
    ("a\nb", "control character"), ("a\x00", "control character"), ("a\x7f", "control character"),
    (3, "must be a string"), (None, "must be a string"),
])
def test_name_problem(name, problem):
    found = name_problem(name, "watcher name")
    if problem is None:
        assert found is None
        assert check_name(name) == name
    else:
        assert found and found.startswith("watcher name") and problem in found
        with pytest.raises(ProtocolError) as info:
            check_name(name)
        assert info.value.code is ErrorCode.INVALID_PROPERTY


@pytest.mark.parametrize("pattern, why", [
    ("(a+)+$", "a quantifier inside a quantified group"),
    ("(a*)*b", "a quantifier inside a quantified group"),
    ("(?:x+y)+", "a quantifier inside a quantified group"),
    ("(a|aa)*b", "an alternation inside a quantified group"),
    ("(ab|b)+", "an alternation inside a quantified group"),
    ("(?:x|yz?){2}", "an alternation inside a quantified group"),
    (r"(a)\1", "a back-reference"),
    (r"(?P<x>a)(?P=x)", "a back-reference"),
    (r"(a)?(?(1)b|c)", "a back-reference"),
    ("a*b*c*", "more than 2 unbounded quantifiers"),
    (r"\w+-\w+-\w+", "more than 2 unbounded quantifiers"),
    ("a{0,100}b{0,100}c{0,100}", "more than 2 unbounded quantifiers"),
    ("a?" * 30 + "b", f"more than {MAX_WAYS} ways to match"),
    ("(a?){16}b", f"more than {MAX_WAYS} ways to match"),
    ("(?:a?a?a?a?){8}", f"more than {MAX_WAYS} ways to match"),
    ("a{0,16}" * 4, f"more than {MAX_WAYS} ways to match"),
    (r".*.*(x?){4}", f"more than {MAX_WAYS} ways to match"),
    ("(a?){1000000}b", "a repetition of at least 1000000"),
    ("(?:){1000000}", "a repetition of at least 1000000"),
    ("(?:a?b?){200,300}c", "a repetition of at least 200"),
    ("(?:a?){100}", f"more than {MAX_WAYS} ways to match"),
])
def test_compile_match_refuses_unbounded_patterns(pattern, why):
    with pytest.raises(ProtocolError) as info:
        compile_match(pattern)
    assert info.value.code is ErrorCode.INVALID_PROPERTY
    assert why in info.value.reason and "match = glob" in info.value.reason


@pytest.mark.parametrize("pattern", [
    "web", "^web", "web.*", "^worker-[0-9]+$", r"(foo|bar)-\d{1,3}$", ".*-canary$", r"\w+\.\w+",
    "^(api|web|worker)", "a{2,5}b", "[a-z]*[0-9]*", r"(?:web|api)-\d+", "x?y?z?", r".*.*-?x",
    "(?=web)w", "(?!test).*", "abc|def|ghi", "x{128}", "(?:ab){1,64}", "(?:){100}",
])
def test_compile_match_accepts_usual_patterns_case_insensitively(pattern):
    compiled = compile_match(pattern)
    assert compiled.flags & 2                       # re.IGNORECASE


def test_compile_match_reports_syntax_and_length():
    with pytest.raises(ProtocolError, match="invalid regex '\\(unclosed'"):
        compile_match("(unclosed")
    with pytest.raises(ProtocolError, match=f"longer than {MAX_PATTERN}"):
        compile_match("a" * (MAX_PATTERN + 1))
    assert compile_match("WEB").match("web-1")


@settings(max_examples=400, deadline=None, database=None)
@given(st.text(alphabet="ab?*+|(){}0123456789,.\\w[]^$-", max_size=40))
def test_compile_match_on_random_patterns_refuses_cleanly_or_matches(pattern):
    """Whatever the text: a ProtocolError or a pattern that matches names (a freeze would hang
    here; faulthandler_timeout reports it)."""
    try:
        compiled = compile_match(pattern)
    except ProtocolError as exc:
        assert exc.code is ErrorCode.INVALID_PROPERTY and repr(pattern) in exc.reason
        return
    for name in ("a" * MAX_NAME, "ab" * (MAX_NAME // 2), "a" * (MAX_NAME - 1) + "!", "web-1"):
        compiled.match(name)
