"""_objects without the kernel: the compile cache key, .rodata constants encoding, verifier log parsing."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.cnf.ebpf.plugins.module_utils.resources import _objects
from ansible_collections.cnf.ebpf.plugins.module_utils.resources._objects import (
    CompileError,
    ConstantSpec,
    ObjectParamError,
    ObjectSpec,
    VerifierError,
    cache_key,
    encode_constants,
    local_headers,
    parse_make_deps,
    parse_verifier_log,
)
from ansible_collections.cnf.ebpf.plugins.module_utils.types._btf import Array, Int, Member, Modifier, Struct, Typedef

needs_clang = pytest.mark.skipif(shutil.which("clang") is None, reason="clang is not installed")


# --- cache key -------------------------------------------------------------------------------------------------


def test_parse_make_deps_joins_continuations_and_keeps_escaped_spaces() -> None:
    text = "object: /src/a.c \\\n  /src/my\\ dir/b.h /usr/include/linux/bpf.h \\\n  inc/c.h\n"
    assert parse_make_deps(text) == ["/src/a.c", "/src/my dir/b.h", "/usr/include/linux/bpf.h", "inc/c.h"]


def test_local_headers_drop_the_source_system_headers_and_duplicates() -> None:
    deps = ["/src/a.c", "/usr/include/linux/bpf.h", "/src/b.h", "/usr/lib/llvm-14/include/stdbool.h", "/src/b.h"]
    assert local_headers(deps, "/src/a.c") == ["/src/b.h"]


def test_cache_key_covers_every_input_and_is_unambiguous() -> None:
    base = cache_key(b"src", "/s", [("/s/a.h", b"A")], ["-O2"], "clang 14")
    assert base == cache_key(b"src", "/s", [("/s/a.h", b"A")], ["-O2"], "clang 14")
    variants = [
        cache_key(b"src2", "/s", [("/s/a.h", b"A")], ["-O2"], "clang 14"),
        cache_key(b"src", "/s", [("/s/a.h", b"B")], ["-O2"], "clang 14"),
        cache_key(b"src", "/s", [("/s/b.h", b"A")], ["-O2"], "clang 14"),
        cache_key(b"src", "/s", [("/s/a.h", b"A")], ["-O2", "-DX"], "clang 14"),
        cache_key(b"src", "/s", [("/s/a.h", b"A")], ["-O2"], "clang 15"),
        # The same bytes split differently between parts must not collide.
        cache_key(b"sr", "/s", [("/s/a.h", b"cA")], ["-O2"], "clang 14"),
        cache_key(b"src", "/s", [("/s/a.h", b"A")], ["-O", "2"], "clang 14"),
    ]
    assert len({base, *variants}) == len(variants) + 1
    # Moving the whole tree (source and headers together) keeps the key.
    assert base == cache_key(b"src", "/elsewhere", [("/elsewhere/a.h", b"A")], ["-O2"], "clang 14")


def test_flags_are_stable_and_defines_sorted() -> None:
    one = _objects.build_flags(["inc"], {"B": 2, "A": None, "C": True}, ["-Wall"])
    two = _objects.build_flags(["inc"], {"C": True, "A": None, "B": 2}, ["-Wall"])
    assert one == two
    assert one[-4:] == ["-DA", "-DB=2", "-DC=1", "-Wall"]
    with pytest.raises(ObjectParamError, match=r"defines\.1X"):
        _objects.build_flags([], {"1X": 1})


def _project(tmp_path: Path) -> Path:
    (tmp_path / "inc").mkdir()
    (tmp_path / "inc" / "limits.h").write_text("#define LIMIT 4\n")
    (tmp_path / "unrelated.h").write_text("#define UNUSED 1\n")
    src = tmp_path / "prog.c"
    src.write_text('#include "limits.h"\nint limit(void) { return LIMIT; }\n')
    return src


@needs_clang
def test_header_change_changes_digest_unrelated_file_does_not(tmp_path: Path) -> None:
    src = _project(tmp_path)
    cache = str(tmp_path / "cache")
    first = _objects.compile_source(str(src), include_dirs=[str(tmp_path / "inc")], cache_dir=cache)
    assert not first.cached and Path(first.path).is_file() and first.path == f"{cache}/{first.digest}.o"

    (tmp_path / "unrelated.h").write_text("#define UNUSED 2\n")
    again = _objects.compile_source(str(src), include_dirs=[str(tmp_path / "inc")], cache_dir=cache)
    assert again.cached and again.digest == first.digest

    (tmp_path / "inc" / "limits.h").write_text("#define LIMIT 5\n")
    changed = _objects.compile_source(str(src), include_dirs=[str(tmp_path / "inc")], cache_dir=cache)
    assert not changed.cached and changed.digest != first.digest

    with_define = _objects.compile_source(
        str(src), include_dirs=[str(tmp_path / "inc")], defines={"DEBUG": 1}, cache_dir=cache
    )
    assert with_define.digest != changed.digest
    # Only finished objects are in the cache (the temporary file was renamed), beside the glibc shim's directory.
    assert sorted(p.name for p in Path(cache).iterdir() if p.name != _objects.SHIM_DIR_NAME) == sorted(
        f"{c.digest}.o" for c in (first, changed, with_define)
    )


@needs_clang
def test_cache_hit_does_not_compile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _project(tmp_path)
    cache = str(tmp_path / "cache")
    first = _objects.compile_source(str(src), include_dirs=[str(tmp_path / "inc")], cache_dir=cache)
    commands: list[list[str]] = []
    real_run = _objects.subprocess.run

    def spy(cmd: list[str], *, check: bool = False, **kwargs: Any) -> Any:
        commands.append(cmd)
        return real_run(cmd, check=check, **kwargs)

    monkeypatch.setattr(_objects.subprocess, "run", spy)
    hit = _objects.compile_source(str(src), include_dirs=[str(tmp_path / "inc")], cache_dir=cache)
    assert hit.cached and hit.digest == first.digest
    assert all("-M" in cmd and "-c" not in cmd for cmd in commands), commands


@needs_clang
def test_compile_error_names_source_and_first_clang_error(tmp_path: Path) -> None:
    src = tmp_path / "bad.c"
    src.write_text("int f(void) { return 1 }\n")
    with pytest.raises(CompileError) as err:
        _objects.compile_source(str(src), cache_dir=str(tmp_path / "cache"))
    assert str(err.value).startswith(f"clang could not compile {src}: {src}:1:23: error: expected ';'")
    assert "\n" not in str(err.value)
    assert "error:" in err.value.stderr and err.value.command[0] == "clang"
    # no temporary file left behind, only the glibc shim's directory
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [_objects.SHIM_DIR_NAME]


def test_missing_header_is_a_compile_error(tmp_path: Path) -> None:
    if shutil.which("clang") is None:
        pytest.skip("clang is not installed")
    src = tmp_path / "p.c"
    src.write_text('#include "nowhere.h"\n')
    with pytest.raises(CompileError, match=r"nowhere\.h"):
        _objects.compile_source(str(src), cache_dir=str(tmp_path / "cache"))


# --- constants -------------------------------------------------------------------------------------------------

U32 = Typedef("__u32", Int("unsigned int", 4))
BOOL = Int("_Bool", 1, is_bool=True)
S16 = Int("short", 2, signed=True)


def _vc(t):  # volatile const, as `volatile const T name` comes out of clang
    return Modifier("const", Modifier("volatile", t))


def _spec(constants: dict[str, ConstantSpec]) -> ObjectSpec:
    return ObjectSpec(path="x.o", name="x", programs=[], maps=[], constants=constants)


SPEC = _spec(
    {
        "drop_port": ConstantSpec("drop_port", _vc(U32), 0, 4),
        "enabled": ConstantSpec("enabled", _vc(BOOL), 4, 1),
        "delta": ConstantSpec("delta", _vc(S16), 6, 2),
        "name": ConstantSpec("name", _vc(Array(Int("char", 1, signed=True, is_char=True), 8)), 8, 8),
        "cfg": ConstantSpec(
            "cfg",
            _vc(Struct("cfg", 8, [Member("lo", U32, 0), Member("hi", U32, 32)])),
            16,
            8,
        ),
    }
)
IMAGE = bytes(24)


def test_encode_constants_sets_only_the_named_bytes() -> None:
    current = bytes(range(24))
    out = encode_constants(SPEC, {"drop_port": 53, "enabled": True}, current)
    assert struct.unpack_from("<I", out, 0)[0] == 53
    assert out[4] == 1
    assert out[5:] == current[5:]
    out = encode_constants(SPEC, {"delta": -2, "name": "eth0", "cfg": {"lo": 1, "hi": 2}}, IMAGE)
    assert struct.unpack_from("<h", out, 6)[0] == -2
    assert out[8:16] == b"eth0\0\0\0\0"
    assert struct.unpack_from("<II", out, 16) == (1, 2)
    assert _objects.decode_constants(SPEC, out)["cfg"] == {"lo": 1, "hi": 2}


def test_unknown_constant_lists_the_known_ones() -> None:
    with pytest.raises(ObjectParamError) as err:
        encode_constants(SPEC, {"drop_prot": 1}, IMAGE)
    assert err.value.path == "constants.drop_prot"
    assert "cfg, delta, drop_port, enabled, name" in str(err.value)
    with pytest.raises(ObjectParamError, match=r"no \.rodata constants.*volatile const"):
        encode_constants(_spec({}), {"x": 1}, b"")


@pytest.mark.parametrize(
    "constants, path, words",
    [
        ({"drop_port": 2**32}, "constants.drop_port", "range"),
        ({"drop_port": -1}, "constants.drop_port", "range"),
        ({"drop_port": "fifty"}, "constants.drop_port", "integer"),
        ({"delta": 40000}, "constants.delta", "range"),
        ({"name": "much-too-long"}, "constants.name", "long"),
        ({"cfg": {"lo": 1, "mid": 2}}, "constants.cfg", "mid"),
        ({"cfg": {"lo": -1, "hi": 0}}, "constants.cfg.lo", "range"),
    ],
)
def test_constant_type_errors_name_the_constant(constants: dict, path: str, words: str) -> None:
    with pytest.raises(ObjectParamError) as err:
        encode_constants(SPEC, constants, IMAGE)
    assert str(err.value).startswith(path), str(err.value)
    assert words in str(err.value).lower(), str(err.value)


def test_constant_outside_the_image_is_refused() -> None:
    with pytest.raises(ObjectParamError, match=r"constants\.cfg: .*does not fit the 20-byte"):
        encode_constants(SPEC, {"cfg": {"lo": 1, "hi": 2}}, bytes(20))


def test_constant_formats_apply_per_constant() -> None:
    out = encode_constants(SPEC, {"drop_port": "10.0.0.1"}, IMAGE, formats={"constants.drop_port": "ipv4"})
    assert out[:4] == bytes([10, 0, 0, 1])


# --- verifier log ----------------------------------------------------------------------------------------------

PACKET_LOG = """func#0 @0
0: R1=ctx() R10=fp0
; struct ethhdr *eth = (void *)(long)ctx->data; @ prog.c:29
0: (61) r1 = *(u32 *)(r1 +0)          ; R1=pkt(r=0)
1: (71) r2 = *(u8 *)(r1 +12)
invalid access to packet, off=12 size=1, R1(id=0,off=12,r=0)
R1 offset is outside of the packet
processed 2 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0
"""

NO_INSNS_LOG = """back-edge from insn 5 to 3
processed 0 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0
"""


def test_parse_verifier_log_takes_the_error_after_the_last_instruction() -> None:
    assert parse_verifier_log(PACKET_LOG) == (
        "invalid access to packet, off=12 size=1, R1(id=0,off=12,r=0) R1 offset is outside of the packet",
        2,
    )
    assert parse_verifier_log(NO_INSNS_LOG) == ("back-edge from insn 5 to 3", 0)
    assert parse_verifier_log("Unrecognized arg#0 type PTR\n") == ("Unrecognized arg#0 type PTR", None)
    assert parse_verifier_log("") == ("", None)


def test_verifier_error_is_one_sentence() -> None:
    err = VerifierError("xdp_filter", "R1 invalid mem access 'scalar'", "tail", "/var/log/x.log", 17, "6.1.0")
    assert str(err) == (
        "the kernel verifier rejected program xdp_filter: R1 invalid mem access 'scalar' "
        "(after processing 17 instructions, kernel 6.1.0); full verifier log: /var/log/x.log"
    )
    err = VerifierError("p", "m", "", None, None, "6.18.0")
    assert str(err) == "the kernel verifier rejected program p: m (kernel 6.18.0)"


def test_bcc_functions_are_checked_before_anything() -> None:
    from ansible_collections.cnf.ebpf.plugins.module_utils.resources._bcc import check_functions

    assert check_functions({"xdp_count": "xdp", "probe": "kprobe"}) == {"xdp_count": "xdp", "probe": "kprobe"}
    with pytest.raises(ValueError, match=r"functions\.f: socket_filter programs are attached through a socket"):
        check_functions({"f": "socket_filter"})
    with pytest.raises(ValueError, match=r"functions\.f: 'xpd' is not one of xdp, tc"):
        check_functions({"f": "xpd"})
    with pytest.raises(ValueError, match="functions: loader=bcc needs the functions"):
        check_functions({})


# --- program styles ------------------------------------------------------------------------------------------


def test_shim_headers_are_not_local_headers() -> None:
    """Our <gnu/stubs.h> shim is covered by the key through its contents, not by its path (the cache dir differs
    between hosts)."""
    deps = ["/src/a.c", "/var/lib/cnf-ebpf/cache/include/gnu/stubs.h", "/src/b.h"]
    assert local_headers(deps, "/src/a.c", "/var/lib/cnf-ebpf/cache/include") == ["/src/b.h"]


@needs_clang
def test_glibc_including_source_compiles_and_its_digest_ignores_the_cache_dir(tmp_path: Path) -> None:
    """<linux/if.h> pulls in glibc's <sys/socket.h> and with it <gnu/stubs.h>, which under -target bpf wants
    gnu/stubs-32.h (multilib only); the shim makes it build as written, and two caches give one digest."""
    src = tmp_path / "glibc.c"
    src.write_text(
        "#include <stdint.h>\n#include <linux/bpf.h>\n#include <linux/if.h>\n#include <linux/icmp.h>\n"
        '__attribute__((section("xdp"), used)) int prog(struct xdp_md *ctx) { uint32_t v = XDP_PASS; return v; }\n'
        'char _license[] __attribute__((section("license"), used)) = "GPL";\n'
    )
    one = _objects.compile_source(str(src), cache_dir=str(tmp_path / "one"))
    two = _objects.compile_source(str(src), cache_dir=str(tmp_path / "two"))
    assert one.digest == two.digest and Path(one.path).read_bytes() == Path(two.path).read_bytes()
    assert (tmp_path / "one" / "include" / "gnu" / "stubs.h").read_text() == _objects.GLIBC_STUBS_SHIM


@pytest.mark.parametrize(
    ("section", "modern"),
    [
        ("xdp_icmp_echo", "xdp"),
        ("xdp_pass", "xdp"),
        ("classifier_ingress", "classifier"),
        ("tc_egress", "tc"),
        ("raw_tracepoint_x", "raw_tracepoint"),
        ("socket1", "socket"),
        ("my_prog", None),
    ],
)
def test_legacy_sections_map_to_what_libbpf_before_1_0_read(section: str, modern: str | None) -> None:
    assert _objects.legacy_section_replacement(section) == modern


def test_program_without_a_type_names_its_section_and_the_fix() -> None:
    spec = ObjectSpec(
        path="/x.o",
        name="x",
        programs=[_objects.ProgramSpec("xdp_icmp_echo_func", "xdp_icmp_echo", "unspec", "cgroup_inet_ingress")],
        maps=[],
        constants={},
    )
    with pytest.raises(ObjectParamError) as err:
        _objects.check_program_types(spec)
    assert err.value.path == "programs.xdp_icmp_echo_func"
    assert 'SEC("xdp_icmp_echo") is not a section name libbpf 1.x knows' in err.value.problem
    assert 'write SEC("xdp")' in err.value.problem and "program_types: {xdp_icmp_echo_func: xdp}" in err.value.problem
    spec.programs = [_objects.ProgramSpec("p", "weird", "unspec", "cgroup_inet_ingress")]
    with pytest.raises(ObjectParamError) as err:
        _objects.check_program_types(spec)
    assert _objects.PROGRAM_TYPES_DOC in err.value.problem and "program_types: {p: <section>}" in err.value.problem


def test_pre_1_0_map_definition_compile_error_says_what_to_write() -> None:
    stderr = "a.c:3:32: error: variable has incomplete type 'struct bpf_map_def'\n"
    err = CompileError("/src/a.c", ["clang"], stderr)
    assert "libbpf 1.x removed" in str(err) and 'SEC(".maps")' in str(err)
