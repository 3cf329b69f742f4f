#!/usr/bin/env python3
"""Perplexity on several text domains, ours beside llama.cpp's, on texts no recipe was tuned on.

The 2-bit recipe was tuned on Shakespeare; this script measures every model file on four more
English domains and on code, with llama.cpp's perplexity method (ctx 512, each chunk from an empty
cache, the second half of each chunk scored), so that a change that only helps Shakespeare shows.
It is a tool run by hand, not part of CI.

    python3 Tests/quality/domains.py prepare                  # texts -> ~/.cache/edgeattn/domains/
    python3 Tests/quality/domains.py build-llamacpp           # llama-perplexity/-quantize/-imatrix
    python3 Tests/quality/domains.py llamacpp-types SRC.gguf  # Q2_K ... IQ2_XS from SRC
    python3 Tests/quality/domains.py measure MODEL.gguf --label L --group G [--kv-bits 4] [--chunks 20] [--llamacpp]
    python3 Tests/quality/domains.py table [--out FILE.md]    # Markdown tables + results.json

Domains (each split by document into an `eval` half, the only part ever scored, and a `calib` half
that calibration experiments may use):
  shakespeare    hamlet_gut.txt (the project's evaluation text) / macbeth, othello, tempest, lear
  pydocs         Python 3.11 library reference, reStructuredText sources (Debian python3.11-doc)
  debian-ref     the Debian Reference, HTML converted to text (Debian debian-reference-en)
  kernel-docs    Linux kernel documentation, .rst sources (Debian linux-doc)
  gnu-standards  GNU coding standards / GNU maintainer information (Debian gnu-standards)  HELD OUT
  code           Python standard-library modules (/usr/lib/python3.11/*.py)

HELD-OUT: gnu-standards is never used for calibration or for choosing a recipe, not even its calib
half. It is the check that nothing was tuned to the other columns; keep it that way.

Every CPU-heavy step runs under `nice -n 19`, one at a time (the machine is shared).
"""
import argparse
import datetime
import glob
import gzip
import hashlib
import html.parser
import json
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("EA_CACHE", Path.home() / ".cache" / "edgeattn"))
DEFAULT_OUT = CACHE / "domains"
TOOLS = CACHE / "llamacpp-tools"
LLAMA_CPP_PYTHON = "llama-cpp-python==0.3.36"  # the version Tests/bench/vs_llamacpp.py builds
SMOLLM2 = CACHE / "SmolLM2-135M-Instruct.Q4_1.gguf"
NICE = ["nice", "-n", "19"]

HELD_OUT = "gnu-standards"
DOMAINS = ["shakespeare", "pydocs", "debian-ref", "kernel-docs", "gnu-standards", "code"]
DEBIAN_PACKAGES = {"pydocs": "python3.11-doc", "debian-ref": "debian-reference-en",
                   "kernel-docs": "linux-doc", "gnu-standards": "gnu-standards"}
# llama.cpp types made from the source; the i-quants need an importance matrix.
LLAMA_TYPES = ["Q2_K", "Q3_K_S", "Q4_0", "IQ2_XS", "IQ3_XXS"]
NEEDS_IMATRIX = {"IQ2_XS", "IQ3_XXS"}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def sh(cmd, **kw):
    log("+ " + " ".join(str(c) for c in cmd))
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def default_cli():
    """Our release CLI: this checkout's, else $EA_CLI (e.g. another built checkout's)."""
    env = os.environ.get("EA_CLI")
    return Path(env) if env else ROOT / ".build" / "release" / "edgeattn"


# ---------------------------------------------------------------- text preparation
_apt_updated = False


def ensure_debian(pkg, probe):
    """Install a Debian package if the path `probe` is missing (apt-get update once first)."""
    global _apt_updated
    if glob.glob(probe):
        return
    if not _apt_updated:
        sh(["apt-get", "update", "-q"])
        _apt_updated = True
    sh(["apt-get", "install", "-y", "-q", pkg], env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def read_text(path):
    """A file's text (gunzipped if .gz), undecodable bytes replaced, line ends normalized."""
    raw = gzip.open(path).read() if str(path).endswith(".gz") else Path(path).read_bytes()
    return raw.decode("utf-8", errors="replace").replace("\r\n", "\n")


class _HTMLText(html.parser.HTMLParser):
    """HTML -> plain text with the standard library only: drops <script>/<style>/<head>, the
    per-chapter tables of contents and the navigation bars (lists of headings, not prose), keeps <pre>
    verbatim, collapses other whitespace, and starts a new line at block elements."""
    BLOCK = {"p", "div", "br", "li", "dt", "dd", "tr", "table", "pre", "h1", "h2", "h3", "h4", "h5", "h6",
             "ul", "ol", "dl", "blockquote", "section", "title", "hr"}
    SKIP = {"script", "style", "head"}
    SKIP_CLASS = {"toc", "navheader", "navfooter"}  # DocBook's contents lists and Prev/Next bars

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out, self.skip, self.pre = [], 0, 0
        self.toc_tag, self.toc_depth = None, 0

    def handle_starttag(self, tag, attrs):
        if self.toc_tag:
            self.toc_depth += tag == self.toc_tag
            return
        if set((dict(attrs).get("class") or "").split()) & self.SKIP_CLASS:
            self.toc_tag, self.toc_depth = tag, 1
            return
        if tag in self.SKIP:
            self.skip += 1
        if tag == "pre":
            self.pre += 1
        if tag in self.BLOCK:
            self.out.append("\n")

    def handle_endtag(self, tag):
        if self.toc_tag:
            if tag == self.toc_tag:
                self.toc_depth -= 1
                if self.toc_depth == 0:
                    self.toc_tag = None
            return
        if tag in self.SKIP:
            self.skip = max(0, self.skip - 1)
        if tag == "pre":
            self.pre = max(0, self.pre - 1)
        if tag in self.BLOCK:
            self.out.append("\n")

    def handle_data(self, data):
        if self.skip or self.toc_tag:
            return
        self.out.append(data if self.pre else re.sub(r"\s+", " ", data))

    def text(self):
        lines = [ln.rstrip() for ln in "".join(self.out).split("\n")]
        t = "\n".join(ln if ln.strip() else "" for ln in lines)
        return re.sub(r"\n{3,}", "\n\n", t).strip() + "\n"


def html_to_text(path):
    p = _HTMLText()
    p.feed(read_text(path))
    p.close()
    return p.text()


def split_docs(docs):
    """Disjoint halves by document: even positions of the sorted list -> eval, odd -> calib."""
    docs = sorted(docs, key=lambda d: d[0])
    return docs[0::2], docs[1::2]


def cap(docs, max_bytes):
    """A deterministic, evenly spread subset of whole documents of about max_bytes: the largest
    stride s for which docs[::s] still reaches max_bytes, cut after the document that reaches it.
    Spreading (rather than taking the first documents) keeps the whole alphabet of topics."""
    total = sum(len(t.encode()) for _, t in docs)
    if total <= max_bytes:
        return docs
    for s in range(max(1, total // max_bytes), 0, -1):
        pick = docs[::s]
        if sum(len(t.encode()) for _, t in pick) >= max_bytes:
            break
    out, n = [], 0
    for d in pick:
        out.append(d)
        n += len(d[1].encode())
        if n >= max_bytes:
            break
    return out


def domain_docs(name):
    """One domain's (document name, text) pairs as (eval, calib, capped): capped says whether the
    halves may be cut to --max-bytes (not for fixed choices of documents). Installs what is missing."""
    if name == "shakespeare":
        d = CACHE / "shakespeare"
        if not (d / "hamlet_gut.txt").exists():
            sh(["bash", ROOT / "examples" / "fetch-model.sh", "shakespeare"], env=dict(os.environ, EA_CACHE=str(CACHE)))
        # Hamlet byte for byte, so the column matches docs/results/quality.md; the four plays are the
        # project's calibration texts and are never scored.
        ev = [("hamlet_gut.txt", (d / "hamlet_gut.txt").read_bytes().decode("utf-8", errors="replace"))]
        ca = [(n, read_text(d / n)) for n in ["macbeth_gut.txt", "othello_gut.txt", "tempest_gut.txt", "lear_gut.txt"]]
        return ev, ca, False
    if name == "pydocs":
        base = "/usr/share/doc/python3.11/html/_sources/library"
        ensure_debian(DEBIAN_PACKAGES[name], base + "/*.rst.txt")
        docs = [(os.path.relpath(p, base), read_text(p)) for p in glob.glob(base + "/*.rst.txt")]
    elif name == "debian-ref":
        base = "/usr/share/debian-reference"
        ensure_debian(DEBIAN_PACKAGES[name], base + "/ch01.en.html")
        # The chapters, preface and appendix; index.en.html is the table of contents.
        paths = [p for p in glob.glob(base + "/*.en.html") if not p.endswith("index.en.html")]
        docs = [(os.path.basename(p), html_to_text(p)) for p in paths]
    elif name == "kernel-docs":
        base = "/usr/share/doc/linux-doc/Documentation"
        ensure_debian(DEBIAN_PACKAGES[name], base + "/index.rst*")
        paths = glob.glob(base + "/**/*.rst", recursive=True) + glob.glob(base + "/**/*.rst.gz", recursive=True)
        docs = [(os.path.relpath(p, base), read_text(p)) for p in paths]
    elif name == "gnu-standards":
        base = "/usr/share/doc/gnu-standards"
        ensure_debian(DEBIAN_PACKAGES[name], base + "/standards.text.gz")
        # Two documents (plain text made by makeinfo): the coding standards are scored, the
        # maintainers' guide is the calib half, which no calibration may use (held out).
        return ([("standards.text.gz", read_text(base + "/standards.text.gz"))],
                [("maintain.text.gz", read_text(base + "/maintain.text.gz"))], True)
    elif name == "code":
        base = "/usr/lib/python3.11"
        # Not the _sysconfigdata modules (generated dictionaries of build flags, not code written by
        # people) nor symbolic links (the same file twice).
        paths = [p for p in glob.glob(base + "/*.py") if not os.path.islink(p)
                 and not os.path.basename(p).startswith("_sysconfigdata")]
        docs = [(os.path.basename(p), read_text(p)) for p in paths]
    else:
        raise SystemExit("unknown domain " + name)
    ev, ca = split_docs(docs)
    return ev, ca, True


def count_tokens(cli, model, path):
    """Token count as our tokenizer sees the text (no BOS), as `edgeattn tokenize ... | wc -w`."""
    r = subprocess.run(NICE + [str(cli), "tokenize", "-m", str(model), "--file", str(path)],
                       check=True, stdout=subprocess.PIPE)
    return len(r.stdout.split())


def cmd_prepare(a):
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cli = Path(a.cli)
    manifest = {"held_out": HELD_OUT, "max_bytes": a.max_bytes, "tokenizer": SMOLLM2.name, "files": {}}
    for name in a.domains:
        t0 = time.time()
        ev, ca, capped = domain_docs(name)
        for part, docs in (("eval", ev), ("calib", ca)):
            if capped:
                docs = cap(docs, a.max_bytes)
            path = out / ("%s.%s.txt" % (name, part))
            text = docs[0][1] if len(docs) == 1 else "\n\n".join(t.strip("\n") + "\n" for _, t in docs)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(text.encode("utf-8"))
            os.replace(tmp, path)
            info = {"domain": name, "part": part, "bytes": path.stat().st_size, "sha256": sha256(path),
                    "documents": len(docs), "first_documents": [d for d, _ in docs[:3]],
                    "last_document": docs[-1][0]}
            if cli.exists() and SMOLLM2.exists():
                info["tokens_smollm2"] = count_tokens(cli, SMOLLM2, path)
            manifest["files"][path.name] = info
            log("%-26s %8d bytes %7s tokens %4d docs  %s" % (path.name, info["bytes"], info.get("tokens_smollm2", "?"),
                                                            info["documents"], info["sha256"][:16]))
        log("  %s: %.1f s" % (name, time.time() - t0))
    mf = out / "manifest.json"
    old = json.loads(mf.read_text()) if mf.exists() else {}
    old_files = old.get("files", {})
    old_files.update(manifest["files"])
    manifest["files"] = old_files
    mf.write_text(json.dumps(manifest, indent=1) + "\n")
    print(manifest_markdown(manifest))


def manifest_markdown(m):
    rows = ["| file | documents | bytes | SmolLM2 tokens | sha256 |", "|---|---:|---:|---:|---|"]
    for n in sorted(m["files"], key=lambda n: (DOMAINS.index(m["files"][n]["domain"]), n)):
        f = m["files"][n]
        rows.append("| `%s`%s | %d | %d | %s | `%s` |" % (n, " (held out)" if f["domain"] == HELD_OUT else "",
                    f["documents"], f["bytes"], f.get("tokens_smollm2", "?"), f["sha256"][:16]))
    return "\n".join(rows)


# ---------------------------------------------------------------- llama.cpp's tools
def llama_bin(name):
    return TOOLS / "bin" / name


def cmd_build_llamacpp(a):
    """llama.cpp's perplexity/quantize/imatrix tools from the sources vendored in the PyPI sdist of
    llama-cpp-python (the same version as the speed comparison), built outside the repository."""
    if all(llama_bin(n).exists() for n in ("llama-perplexity", "llama-quantize", "llama-imatrix")):
        log("llama.cpp tools already in %s" % (TOOLS / "bin"))
        return
    src = TOOLS / "src"
    src.mkdir(parents=True, exist_ok=True)
    tars = sorted(src.glob("llama_cpp_python-*.tar.gz"))
    if not tars:
        # --no-binary for this package only: its build requirements (cmake, ninja, scikit-build-core)
        # come as wheels; `--no-binary :all:` would compile cmake itself from source.
        sh([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", "llama-cpp-python",
            LLAMA_CPP_PYTHON, "-d", src])
        tars = sorted(src.glob("llama_cpp_python-*.tar.gz"))
    tree = src / tars[0].name[:-len(".tar.gz")]
    if not tree.exists():
        with tarfile.open(tars[0]) as t:
            t.extractall(src)
    if not shutil.which("cmake"):
        ensure_debian("cmake", "/usr/bin/cmake")
    build = src / "build"
    sh(NICE + ["cmake", "-S", tree / "vendor" / "llama.cpp", "-B", build, "-DCMAKE_BUILD_TYPE=Release",
               "-DLLAMA_CURL=OFF", "-DGGML_NATIVE=ON", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
               "-DLLAMA_BUILD_SERVER=OFF"])
    sh(NICE + ["cmake", "--build", build, "-j2", "--target", "llama-perplexity", "llama-quantize", "llama-imatrix"])
    install_tools(build)


def install_tools(build):
    """Copy the three tools and their shared libraries into TOOLS/bin (rpath $ORIGIN not needed:
    LD_LIBRARY_PATH is set when they run)."""
    (TOOLS / "bin").mkdir(parents=True, exist_ok=True)
    for n in ("llama-perplexity", "llama-quantize", "llama-imatrix"):
        shutil.copy2(build / "bin" / n, llama_bin(n))
    for lib in list(build.glob("bin/*.so*")) + list(build.glob("**/*.so*")):
        if lib.is_file():
            shutil.copy2(lib, TOOLS / "bin" / lib.name)


def llama_env():
    return dict(os.environ, LD_LIBRARY_PATH=str(TOOLS / "bin"))


def cmd_llamacpp_types(a):
    """llama.cpp's types from the source file (--allow-requantize); the i-quants with an imatrix
    computed on the calib halves of every domain but the held-out one."""
    src = Path(a.src)
    out = Path(a.out_dir) if a.out_dir else src.parent
    stem = src.name[:-len(".gguf")]
    stem = re.sub(r"\.(Q4_1|Q4_K_M)$", "", stem).replace("-Q4_K_M", "")
    imatrix = out / (stem + ".imatrix.gguf")
    if any(t in NEEDS_IMATRIX for t in a.types) and not imatrix.exists():
        calib = imatrix_text(Path(a.domains_dir), a.imatrix_bytes)
        t0 = time.time()
        sh(NICE + [llama_bin("llama-imatrix"), "-m", src, "-f", calib, "-o", str(imatrix) + ".tmp.gguf",
                   "-c", "512", "-t", "2"], env=llama_env(), stdout=subprocess.DEVNULL)
        os.replace(str(imatrix) + ".tmp.gguf", imatrix)
        log("imatrix: %.0f s" % (time.time() - t0))
    for t in a.types:
        dst = out / ("%s.%s.gguf" % (stem, t))
        if dst.exists():
            log("have " + str(dst))
            continue
        t0 = time.time()
        cmd = [llama_bin("llama-quantize"), "--allow-requantize"]
        if t in NEEDS_IMATRIX:
            cmd += ["--imatrix", imatrix]
        sh(NICE + cmd + [src, str(dst) + ".tmp", t, "2"], env=llama_env(), stdout=subprocess.DEVNULL)
        os.replace(str(dst) + ".tmp", dst)
        log("%s: %.0f s" % (t, time.time() - t0))
        print(dst)


def imatrix_text(ddir, per_domain):
    """The imatrix's calibration text: the first `per_domain` bytes of each non-held-out domain's
    calib half (whole lines), concatenated in DOMAINS order. Never the eval halves, never the
    held-out domain."""
    parts = []
    for d in DOMAINS:
        if d == HELD_OUT:
            continue
        t = (ddir / ("%s.calib.txt" % d)).read_text(encoding="utf-8")
        cut = t[:per_domain]
        parts.append(cut[:cut.rfind("\n") + 1] if "\n" in cut else cut)
    path = ddir / "imatrix-calib.txt"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


# ---------------------------------------------------------------- GGUF tensor table
GGUF_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
GGML_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 10: "Q2_K", 11: "Q3_K",
              12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS",
              19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 29: "IQ1_M", 30: "BF16"}


def gguf_linear_bpw(path, types=None):
    """Bits per weight of the linear layers (2-D blk.* tensors) and the file size, from the tensor
    table: a tensor's bytes are the distance to the next tensor's data, so this works for any
    tensor type, ours or llama.cpp's. If `types` is a dict, it receives {type name: number of
    linear tensors} (llama.cpp falls back to other types where a row is not a multiple of 256)."""
    with open(path, "rb") as f:
        def rd(fmt):
            return struct.unpack("<" + fmt, f.read(struct.calcsize(fmt)))[0]

        def rstr():
            return f.read(rd("Q")).decode("utf-8", errors="replace")

        def skip_value(t):
            if t == 8:
                rstr()
            elif t == 9:
                et, n = rd("I"), rd("Q")
                for _ in range(n):
                    skip_value(et)
            else:
                f.read(struct.calcsize(GGUF_SCALAR[t]))

        if f.read(4) != b"GGUF":
            raise ValueError("not a GGUF file: %s" % path)
        rd("I")
        n_t, n_kv = rd("Q"), rd("Q")
        align, w2 = 32, {}
        for _ in range(n_kv):
            k, t = rstr(), rd("I")
            if k == "general.alignment" and t == 4:
                align = rd("I")
            elif k.startswith("edgeattn.w2.") and t == 4:  # our W2 / two-plane 4-bit marks (docs/formats.md)
                w2[k[len("edgeattn.w2."):]] = rd("I")
            else:
                skip_value(t)
        tensors = []
        for _ in range(n_t):
            name = rstr()
            dims = [rd("Q") for _ in range(rd("I"))]
            ttype = rd("I")
            tensors.append((rd("Q"), name, dims, ttype))
        data = (f.tell() + align - 1) // align * align
    size = os.path.getsize(path)
    tensors.sort()
    lin_bits = lin_n = 0
    for i, (off, name, dims, ttype) in enumerate(tensors):
        end = tensors[i + 1][0] if i + 1 < len(tensors) else size - data
        n = 1
        for d in dims:
            n *= d
        if name + ".group_size" in w2 and len(dims) == 2:  # ours: dims are [row bytes, rows]
            n = w2_cols(dims[0], w2[name + ".group_size"], w2.get(name + ".planes", 1)) * dims[1]
        if name.startswith("blk.") and len(dims) == 2:
            lin_bits += (end - off) * 8
            lin_n += n
            if types is not None:
                tn = GGML_TYPES.get(ttype, "type %d" % ttype)
                if name + ".group_size" in w2:  # ours: an I8 tensor marked as W2 (2 planes: 4-bit)
                    g = w2[name + ".group_size"]
                    tn = ("W4g%d" if w2.get(name + ".planes", 1) == 2 else "W2g%d") % g
                types[tn] = types.get(tn, 0) + 1
    return lin_bits / max(1, lin_n), size


def w2_cols(row_bytes, group, planes):
    """Weights per row of our W2 (planes 1) or two-plane 4-bit (planes 2) tensor from its row bytes
    (docs/formats.md): the row's planes*cols codes in groups of g, each 4 + g/4 bytes, g the
    largest multiple of 32 not above the group size that divides the row. Row bytes alone can fit
    two widths (180 bytes: 576 weights in groups of 64, or 480 in groups of 32); the converter takes
    the largest group that divides, so the widest fit is the one."""
    for cols in range(4 * row_bytes // 32 * 32, 31, -32):
        g = next((g for g in range(group // 32 * 32, 31, -32) if cols % g == 0), None)
        if g and planes * cols // g * (4 + g // 4) == row_bytes:
            return cols
    raise ValueError("no W2 row of %d bytes with group %d" % (row_bytes, group))


# ---------------------------------------------------------------- measurement
def ours_ppl(cli, model, text, ctx, chunks, kv_bits):
    cmd = NICE + [str(cli), "ppl", "-m", str(model), "-f", str(text), "--ctx", str(ctx), "--chunks", str(chunks),
                  "--kv-bits", str(kv_bits)]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise RuntimeError("ours failed: %s" % r.stderr[-500:])
    ppl = float(re.findall(r"^ppl: ([0-9.]+)$", r.stdout, re.M)[-1])
    m = re.search(r"ppl: (\d+) tokens, (\d+) chunks", r.stderr)
    return {"ppl": ppl, "text_tokens": int(m.group(1)), "chunks": int(m.group(2))}


def llama_ppl(model, text, ctx, chunks):
    cmd = NICE + [str(llama_bin("llama-perplexity")), "-m", str(model), "-f", str(text), "-c", str(ctx),
                  "--chunks", str(chunks), "-t", "2"]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=llama_env())
    m = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", r.stdout)
    if r.returncode != 0 or not m:
        raise RuntimeError("llama-perplexity failed: %s" % r.stdout[-800:])
    t = re.search(r"tokenizing the input .*?\n.*?calculating perplexity over (\d+) chunks, n_ctx=(\d+)", r.stdout, re.S)
    out = {"ppl": float(m.group(1)), "stderr": float(m.group(2))}
    if t:
        out["chunks"] = int(t.group(1))
    return out


def result_path(out, group, label, engine, kv):
    return Path(out) / "results" / group / ("%s.%s.kv%s.json" % (label, engine, kv))


def cmd_measure(a):
    model = Path(a.model).resolve()
    label = a.label or model.name[:-len(".gguf")]
    types = {}
    bpw, size = gguf_linear_bpw(model, types)
    engines = ([] if a.no_ours else ["ours"]) + (["llamacpp"] if a.llamacpp else [])
    domains = a.domains
    for engine in engines:
        kv = a.kv_bits if engine == "ours" else 16  # llama.cpp's default cache: f16
        path = result_path(a.out, a.group, label, engine, kv)
        path.parent.mkdir(parents=True, exist_ok=True)
        res = json.loads(path.read_text()) if path.exists() else {}
        if res.get("chunks") not in (None, a.chunks) or res.get("ctx") not in (None, a.ctx):
            res = {}  # measured with other settings: start again
        res.update({"group": a.group, "label": label, "engine": engine, "model": str(model), "model_bytes": size,
                    "linear_bpw": round(bpw, 3), "linear_types": types, "kv_bits": kv, "ctx": a.ctx, "chunks": a.chunks,
                    "machine": "%s, %d cores" % (platform.machine(), os.cpu_count())})
        res.setdefault("domains", {})
        for d in domains:
            if d in res["domains"] and not a.force:
                log("%s %s %s: have %.4f" % (label, engine, d, res["domains"][d]["ppl"]))
                continue
            text = Path(a.out) / ("%s.eval.txt" % d)
            t0 = time.time()
            if engine == "ours":
                r = ours_ppl(a.cli, model, text, a.ctx, a.chunks, kv)
            else:
                r = llama_ppl(model, text, a.ctx, a.chunks)
            r["seconds"] = round(time.time() - t0, 1)
            r["text_sha256"] = sha256(text)
            r["date"] = datetime.date.today().isoformat()
            res["domains"][d] = r
            path.write_text(json.dumps(res, indent=1) + "\n")  # after every domain: a stop loses little
            log("%s %s kv%s %s: ppl %.4f (%.0f s)" % (label, engine, kv, d, r["ppl"], r["seconds"]))


def cmd_table(a):
    base = Path(a.out) / "results"
    rows = [json.loads(p.read_text()) for p in sorted(base.glob("*/*.json"))]
    for r in rows:  # the tensor census again from the file (cheap): rows measured by older versions
        if Path(r["model"]).exists():
            r["linear_types"] = {}
            r["linear_bpw"] = round(gguf_linear_bpw(r["model"], r["linear_types"])[0], 3)
    (base / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    md = []
    for group in sorted({r["group"] for r in rows}, key=lambda g: (a.order.index(g) if g in a.order else 99, g)):
        rs = [r for r in rows if r["group"] == group]
        rs.sort(key=lambda r: (-r["linear_bpw"], r["engine"] != "ours", r["label"], -r["kv_bits"]))
        md.append("### %s\n" % group)
        head = ["file", "engine", "KV", "linear bits/weight", "linear layer types", "MiB"] + \
               [d + (" **(held out)**" if d == HELD_OUT else "") for d in DOMAINS]
        md.append("| " + " | ".join(head) + " |")
        md.append("|" + "---|" * 3 + "---:|" + "---|" + "---:|" * (len(head) - 5))
        for r in rs:
            cells = []
            for d in DOMAINS:
                v = r["domains"].get(d)
                cells.append("%.2f" % v["ppl"] if v else "")
            eng = "ours" if r["engine"] == "ours" else "llama.cpp"
            types = r.get("linear_types", {})
            tcell = ", ".join("%s %d" % (k, v) for k, v in sorted(types.items(), key=lambda kv: -kv[1]))
            md.append("| %s | %s | %s | %.2f | %s | %.1f | %s |" % (
                r["label"], eng, "f16" if r["kv_bits"] == 16 else "%d-bit" % r["kv_bits"],
                r["linear_bpw"], tcell, r["model_bytes"] / 1048576, " | ".join(cells)))
        md.append("")
    text = "\n".join(md)
    if a.md:
        Path(a.md).write_text(text + "\n")
    print(text)


def cmd_plot(a):
    """One PNG: perplexity against bits/weight of the linear layers, a panel per domain and a row
    of panels per source model; llama.cpp's types and ours as two marker styles. Needs matplotlib
    (PyPI); the results come from `table`'s results.json."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = json.loads((Path(a.out) / "results" / "results.json").read_text())
    if a.exclude:
        rows = [r for r in rows if not any(x in r["label"] for x in a.exclude)]
    groups = sorted({r["group"] for r in rows}, key=lambda g: (a.order.index(g) if g in a.order else 99, g))
    fig, axes = plt.subplots(len(groups), len(DOMAINS), figsize=(3.2 * len(DOMAINS), 3.0 * len(groups)), squeeze=False)
    for gi, g in enumerate(groups):
        rs = [r for r in rows if r["group"] == g and r["kv_bits"] in (4, 16)]
        for di, d in enumerate(DOMAINS):
            ax = axes[gi][di]
            for r in rs:
                v = r["domains"].get(d)
                if not v:
                    continue
                ours = r["engine"] == "ours"
                ax.scatter(r["linear_bpw"], v["ppl"], marker="o" if ours else "s",
                           color="tab:red" if ours else "tab:blue", s=24, zorder=3)
                ax.annotate(r["label"].split(" (")[0][:18], (r["linear_bpw"], v["ppl"]), fontsize=5.5,
                            xytext=(3, 2), textcoords="offset points")
            ax.set_yscale("log")
            ax.set_title("%s: %s%s" % (g.split("-")[0], d, " (held out)" if d == HELD_OUT else ""), fontsize=8)
            ax.tick_params(labelsize=6)
            ax.grid(True, which="both", alpha=0.3)
            if di == 0:
                ax.set_ylabel("perplexity (ctx 512)", fontsize=7)
            if gi == len(groups) - 1:
                ax.set_xlabel("bits/weight, linear layers", fontsize=7)
    fig.legend(handles=[plt.Line2D([], [], marker="o", ls="", color="tab:red", label="ours (KV4)"),
                        plt.Line2D([], [], marker="s", ls="", color="tab:blue", label="llama.cpp (f16 KV)")],
               loc="upper right", fontsize=7)
    fig.tight_layout()
    tmp = a.png + ".tmp"
    fig.savefig(tmp, dpi=110, format="png")
    os.replace(tmp, a.png)
    print(a.png)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(DEFAULT_OUT), help="texts, manifest and results (outside the repository)")
    p.add_argument("--cli", default=str(default_cli()), help="our release CLI (default: this checkout's, or $EA_CLI)")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("prepare", help="write DOMAIN.eval.txt / DOMAIN.calib.txt and manifest.json")
    s.add_argument("--max-bytes", type=int, default=300000, help="about this many bytes per half (whole documents)")
    s.add_argument("--domains", nargs="+", default=DOMAINS, choices=DOMAINS)
    s.set_defaults(fn=cmd_prepare)

    s = sub.add_parser("build-llamacpp", help="build llama-perplexity, llama-quantize, llama-imatrix")
    s.set_defaults(fn=cmd_build_llamacpp)

    s = sub.add_parser("llamacpp-types", help="llama.cpp's quantizations of a source GGUF")
    s.add_argument("src")
    s.add_argument("--types", nargs="+", default=LLAMA_TYPES)
    s.add_argument("--out-dir", help="default: beside the source")
    s.add_argument("--imatrix-bytes", type=int, default=16000,
                   help="bytes of each calib half fed to llama-imatrix (16000: about 21K tokens in all, 40 chunks)")
    s.set_defaults(fn=cmd_llamacpp_types)

    s = sub.add_parser("measure", help="perplexity of one model file on every domain's eval half")
    s.add_argument("model")
    s.add_argument("--label", help="row name (default: the file name)")
    s.add_argument("--group", default="SmolLM2-135M-Instruct", help="table the row belongs to (the source model)")
    s.add_argument("--kv-bits", type=int, default=4, help="our KV cache bits (llama.cpp runs its f16 default)")
    s.add_argument("--chunks", type=int, default=20)
    s.add_argument("--ctx", type=int, default=512)
    s.add_argument("--llamacpp", action="store_true", help="also llama.cpp's llama-perplexity on the same file")
    s.add_argument("--no-ours", action="store_true", help="llama.cpp only (types our runtime does not read)")
    s.add_argument("--domains", nargs="+", default=DOMAINS, choices=DOMAINS)
    s.add_argument("--force", action="store_true", help="measure again domains already in the results")
    s.set_defaults(fn=cmd_measure)

    s = sub.add_parser("table", help="Markdown tables of all results (and results/results.json)")
    s.add_argument("--md", help="also write the tables to this file")
    s.add_argument("--order", nargs="*", default=["SmolLM2-135M-Instruct", "Gemma-3-270M"])
    s.set_defaults(fn=cmd_table)

    s = sub.add_parser("plot", help="PNG of perplexity against bits/weight per domain (needs matplotlib)")
    s.add_argument("png")
    s.add_argument("--exclude", nargs="*", default=[], help="leave out rows whose label contains one of these")
    s.add_argument("--order", nargs="+", default=["SmolLM2-135M-Instruct", "Gemma-3-270M"])
    s.set_defaults(fn=cmd_plot)

    a = p.parse_args()
    a.domains_dir = a.out
    a.fn(a)


if __name__ == "__main__":
    main()
