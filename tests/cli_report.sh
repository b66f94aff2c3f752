#!/usr/bin/env bash
# cli_report.sh — the training report and logs through the cnn tool: `cnn train --report DIR --log FILE`
# on the shipped sample (2 short epochs), then: metrics.csv has one row per epoch whose numbers match the
# epoch lines on stdout and the --log JSON; index.html is self-contained (no http(s) references, no
# scripts) and has both SVG charts with axes, ticks and legends, the confusion matrix with Fashion-MNIST
# names whose cells add up to the test split, the misclassified gallery (PNG data URIs), the filter grid,
# the layer table and the settings; `cnn report` after the fact with --log; SIGINT stops after the batch,
# saves --out, says how to continue and exits 130. Then a real browser: headless chromium renders the
# page (screenshot not blank: many distinct colours) and its DOM has the charts (skipped, with a message,
# when chromium is absent; tools/install-deps.sh --ci installs it).
#
# usage: bash tests/cli_report.sh /path/to/cnn
set -u
CNN=${1:?usage: cli_report.sh /path/to/cnn}
SRC=${CNN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
DATA=$SRC/tests/data/fmnist-sample
MODEL=$SRC/models/fmnist-small.cnn
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cnn-cli-report.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT
PY=
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() {
    fail=$((fail + 1))
    printf 'FAIL: %s\n' "$*"
}
finish() {
    echo "cli_report: $pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit
}
has() { if grep -qF -- "$2" "$1"; then ok; else bad "$3: '$2' missing"; fi; }
count() { grep -oF -- "$2" "$1" | wc -l; }

R=$TMP/rep
if ! "$CNN" train "$MODEL" --data "$DATA" --epochs 2 --steps 50 --batch 64 --threads 2 --report "$R" \
    --log "$TMP/log.jsonl" --out "$TMP/w.safetensors" >"$TMP/out" 2>"$TMP/err"; then
    bad "train --report: exit status"
    sed 's/^/    /' "$TMP/err" | head -n 20
    finish
fi
has "$TMP/err" "report written to $R/index.html" "train stderr"
[ -f "$R/index.html" ] && [ -f "$R/metrics.csv" ] && ok || { bad "report files missing"; finish; }

# ---- metrics.csv against the epoch lines and the log ----
[ "$(head -n 1 "$R/metrics.csv")" = "epoch,steps,train_loss,train_acc,test_loss,test_acc,seconds,images_per_second,lr" ] &&
    ok || bad "metrics.csv header"
[ "$(wc -l <"$R/metrics.csv")" -eq 3 ] && ok || bad "metrics.csv: expected 2 epoch rows"
[ "$(wc -l <"$TMP/log.jsonl")" -eq 2 ] && ok || bad "--log: expected 2 lines"
if [ -n "$PY" ]; then
    if "$PY" - "$R/metrics.csv" "$TMP/out" "$TMP/log.jsonl" <<'PYEOF'
import csv, json, re, sys
rows = list(csv.DictReader(open(sys.argv[1])))
lines = [l for l in open(sys.argv[2]) if l.startswith("epoch ")]
logs = [json.loads(l) for l in open(sys.argv[3])]
assert len(rows) == len(lines) == len(logs) == 2, (len(rows), len(lines), len(logs))
for r, l, j in zip(rows, lines, logs):
    m = re.match(r"epoch (\d+)/2  loss ([0-9.]+)  train_acc ([0-9.]+)  test_acc ([0-9.]+)", l)
    assert m, l
    assert int(r["epoch"]) == int(m.group(1)) == j["epoch"]
    for key, g in (("train_loss", 2), ("train_acc", 3), ("test_acc", 4)):
        v = float(r[key])
        assert "%.4f" % v == m.group(g), (key, v, m.group(g))
        assert abs(v - j[key]) <= 1e-8 * max(1, abs(v)), (key, v, j[key])
    assert int(r["steps"]) == j["steps"]
    assert abs(float(r["test_loss"]) - j["test_loss"]) <= 1e-8
assert [int(r["steps"]) for r in rows] == [32, 50], [r["steps"] for r in rows]
PYEOF
    then ok; else bad "metrics.csv does not match the epoch lines / log"; fi
fi

# ---- index.html content ----
H=$R/index.html
grep -qiE '(src|href)="https?:' "$H" && bad "index.html references the network" || ok
grep -qi '<script' "$H" && bad "index.html has scripts" || ok
[ "$(count "$H" '<svg class="chart"')" -eq 2 ] && ok || bad "expected 2 SVG charts"
[ "$(count "$H" '<g class="legend">')" -eq 2 ] && ok || bad "expected 2 legends"
[ "$(count "$H" 'class="yt"')" -ge 6 ] && [ "$(count "$H" 'class="xt"')" -ge 4 ] && ok || bad "too few axis ticks"
[ "$(count "$H" 'class="series"')" -eq 4 ] && ok || bad "expected 4 curves (train/test x loss/accuracy)"
has "$H" '<table class="cm">' "confusion matrix"
for n in "T-shirt/top" "Trouser" "Ankle boot" "Sneaker"; do has "$H" "<th>$n</th>" "class names"; done
if [ -n "$PY" ]; then
    "$PY" - "$H" <<'PYEOF' && ok || bad "confusion matrix cells do not add up to the 500 test images / test_acc"
import re, sys
h = open(sys.argv[1]).read()
cm = h[h.index('<table class="cm">'):]
cm = cm[:cm.index("</table>")]
rows = re.findall(r"<tr><th class=\"r\">.*?</tr>", cm)
assert len(rows) == 10
cells = [[int(v) for v in re.findall(r"<td style=[^>]*>(\d+)</td>", r)] for r in rows]
assert all(len(r) == 10 for r in cells)
assert sum(map(sum, cells)) == 500
diag = sum(cells[i][i] for i in range(10))
m = re.search(r"test accuracy <b>([0-9.]+)%</b>", h)
assert abs(float(m.group(1)) - 100 * diag / 500) < 0.006
PYEOF
fi
[ "$(count "$H" 'class="sample"')" -eq 24 ] && ok || bad "expected 24 misclassified images"
has "$H" 'src="data:image/png;base64,iVBORw0KGgo' "PNG data URI"
has "$H" 'class="filters"' "filter grid"
has "$H" '<b>conv1</b>: 32 filters of 3x3' "filter caption"
has "$H" '<td>fc2</td><td>dense</td><td>10x1x1</td>' "layer table"
has "$H" '<th>optimizer</th><td>sgd</td>' "settings"
has "$H" '<th class="n">421642</th>' "parameter total"

# ---- cnn report after the fact ----
"$CNN" report "$TMP/w.safetensors" --model "$MODEL" --data "$DATA" -o "$TMP/rep2" --log "$TMP/log.jsonl" \
    >"$TMP/r2" 2>&1 || bad "cnn report: exit $?"
[ -f "$TMP/rep2/index.html" ] && [ "$(count "$TMP/rep2/index.html" '<svg class="chart"')" -eq 2 ] && ok ||
    bad "cnn report: no charts"
cmp -s <(sed 1d "$R/metrics.csv" | cut -d, -f1-6) <(sed 1d "$TMP/rep2/metrics.csv" | cut -d, -f1-6) && ok ||
    bad "cnn report --log: metrics.csv differs from the run's"
sed -n 's/.*test accuracy <b>\([0-9.]*\)%.*/\1/p' "$H" >"$TMP/a1"
sed -n 's/.*test accuracy <b>\([0-9.]*\)%.*/\1/p' "$TMP/rep2/index.html" >"$TMP/a2"
cmp -s "$TMP/a1" "$TMP/a2" && ok || bad "cnn report: test accuracy $(cat "$TMP/a2") differs from the run's $(cat "$TMP/a1")"
"$CNN" report "$TMP/w.safetensors" --model "$MODEL" --data "$DATA" -o "$TMP/rep3" >/dev/null 2>&1 &&
    grep -q 'No training history' "$TMP/rep3/index.html" && ok || bad "cnn report without --log"
"$CNN" report "$TMP/w.safetensors" --model "$MODEL" --data "$DATA" -o "$TMP/rep4" --log "$MODEL" >/dev/null 2>"$TMP/e4"
[ $? -eq 1 ] && [ "$(wc -l <"$TMP/e4")" -eq 1 ] && ok || bad "cnn report --log with a non-log file"

# ---- SIGINT: stop after the batch, save, say how to continue, exit 130 ----
"$CNN" train "$MODEL" --data "$DATA" --epochs 50 --batch 32 --threads 2 --out "$TMP/wi.safetensors" \
    >"$TMP/i.out" 2>"$TMP/i.err" &
pid=$!
for _ in $(seq 600); do grep -q 'batch' "$TMP/i.err" 2>/dev/null && break; sleep 0.1; done # (its handler is installed by then: before, a background job ignores SIGINT)
kill -INT "$pid"
wait "$pid"
rc=$?
[ "$rc" -eq 130 ] && ok || bad "SIGINT: exit status $rc, expected 130"
[ -s "$TMP/wi.safetensors" ] && ok || bad "SIGINT: weights not saved"
has "$TMP/i.err" "train: interrupted: stopped at epoch" "SIGINT message"
has "$TMP/i.err" "to continue: cnn train" "SIGINT how to continue"
"$CNN" train "$MODEL" --data "$DATA" --steps 2 --batch 32 --threads 2 --quiet --weights "$TMP/wi.safetensors" \
    >/dev/null 2>&1 && ok || bad "train --weights (continuing) failed"

# ---- a real browser ----
CHROME=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$CHROME" ]; then
    echo "cli_report: chromium not installed: browser check skipped (tools/install-deps.sh --ci installs it)"
    finish
fi
browse() {
    timeout 60 "$CHROME" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$TMP/chrome-profile" "$@" "file://$H" 2>"$TMP/chrome.err"
}
browse --screenshot="$TMP/shot.png" --window-size=1200,2000 >/dev/null || bad "chromium --screenshot failed: $(tail -n 3 "$TMP/chrome.err")"
browse --dump-dom >"$TMP/dom.html" || bad "chromium --dump-dom failed"
[ "$(count "$TMP/dom.html" '<svg class="chart"')" -eq 2 ] && ok || bad "browser DOM: expected 2 charts"
[ "$(count "$TMP/dom.html" '<polyline class="series"')" -eq 4 ] && ok || bad "browser DOM: expected 4 curves"
if [ -n "$PY" ] && [ -f "$TMP/shot.png" ]; then
    # distinct colours of the decoded screenshot (zlib only: no image library needed)
    colours=$("$PY" - "$TMP/shot.png" <<'PYEOF'
import struct, sys, zlib
d = open(sys.argv[1], "rb").read()
assert d[:8] == b"\x89PNG\r\n\x1a\n"
pos, idat, w = 8, b"", 0
while pos < len(d):
    n, t = struct.unpack(">I4s", d[pos:pos + 8])
    body = d[pos + 8:pos + 8 + n]
    if t == b"IHDR":
        w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
        assert depth == 8 and ctype in (2, 6), (depth, ctype)
        bpp = 3 if ctype == 2 else 4
    elif t == b"IDAT":
        idat += body
    pos += 12 + n
raw = zlib.decompress(idat)
stride = w * bpp
prev = bytearray(stride)
colours = set()
for y in range(h):
    f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for i in range(stride):
        a = line[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        if f == 1: line[i] = (line[i] + a) & 255
        elif f == 2: line[i] = (line[i] + b) & 255
        elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    if y % 4 == 0:
        for i in range(0, stride, bpp * 2):
            colours.add(bytes(line[i:i + 3]))
    prev = line
print(len(colours))
PYEOF
)
    [ "${colours:-0}" -ge 50 ] && ok || bad "screenshot looks blank: ${colours:-?} distinct colours"
fi
finish
