#!/usr/bin/env bash
# cli_viz.sh — the seeing commands through the cnn tool: explain conv/pool (the worked examples' numbers,
# the window walk, custom --input/--filter/--size/--stride), predict on the shipped sample with weights
# trained here for a few steps (top-5 with Fashion-MNIST names, probabilities summing to ~1; a PNG and a
# JPEG written here), viz feature maps and --filters (valid PNG: signature, IHDR size as printed), and
# bad inputs (corrupt PNG, a text file as image, missing layer, --filters on a non-conv layer): one "cnn:"
# line, exit status 1 or 2, never a signal. Also train's progress output: plain lines without control
# characters into a pipe, "\r" redraws on a pseudo-terminal (script(1)), nothing with --quiet.
#
# usage: bash tests/cli_viz.sh /path/to/cnn
set -u
CNN=${1:?usage: cli_viz.sh /path/to/cnn}
SRC=${CNN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
DATA=$SRC/tests/data/fmnist-sample
MODEL=$SRC/models/fmnist-small.cnn
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cnn-cli-viz.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() {
    fail=$((fail + 1))
    printf 'FAIL: %s\n' "$*"
}
# expect_in FILE TEXT NAME: FILE contains TEXT (fixed string)
expect_in() { if grep -qF -- "$2" "$1"; then ok; else bad "$3: '$2' not in output"; sed 's/^/    /' "$1" | head -n 30; fi; }
# expect_fail NAME CMD...: exit 1 or 2, exactly one stderr line starting "cnn: "
expect_fail() {
    local name=$1
    shift
    "$@" >"$TMP/out" 2>"$TMP/err"
    local rc=$?
    if [ "$rc" -ne 1 ] && [ "$rc" -ne 2 ]; then
        bad "$name: exit status $rc (expected 1 or 2)"
    elif [ "$(wc -l <"$TMP/err")" -ne 1 ] || ! grep -q '^cnn: ' "$TMP/err"; then
        bad "$name: stderr is not one 'cnn:' line:"
        sed 's/^/    /' "$TMP/err" | head -n 5
    else
        ok
    fi
}
# png_size FILE: "W H" from the IHDR, or "" when FILE is not a PNG
png_size() {
    local sig
    sig=$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')
    [ "$sig" = "89504e470d0a1a0a" ] || return 1
    [ "$(head -c 16 "$1" | tail -c 4)" = "IHDR" ] || return 1
    local w h
    w=$(head -c 20 "$1" | tail -c 4 | od -An -tu1 | awk '{print $1*16777216+$2*65536+$3*256+$4}')
    h=$(head -c 24 "$1" | tail -c 4 | od -An -tu1 | awk '{print $1*16777216+$2*65536+$3*256+$4}')
    echo "$w $h"
}
finish() {
    echo "cli_viz: $pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit
}

# ---- explain ----
"$CNN" explain conv >"$TMP/conv" 2>&1 || bad "explain conv: exit $?"
expect_in "$TMP/conv" "= [[-6,-6,-6],[-6,-6,-6],[-6,-6,-6]]" "explain conv"
expect_in "$TMP/conv" "window at output (2,2): input rows 2..4, columns 2..4" "explain conv walk"
expect_in "$TMP/conv" "+ 17*1 + 18*0 + 19*(-1)" "explain conv products"
[ "$(grep -c '= -6   (library: -6)' "$TMP/conv")" -eq 9 ] && ok || bad "explain conv: not 9 windows of -6"
"$CNN" explain pool >"$TMP/pool" 2>&1 || bad "explain pool: exit $?"
expect_in "$TMP/pool" "= [[6,8],[14,16]]" "explain pool"
expect_in "$TMP/pool" "max(11, 12, 15, 16) = 16   (library: 16)" "explain pool walk"
"$CNN" explain conv --input "1,2,3;4,5,6;7,8,9" --filter "1,0;0,-1" >"$TMP/c2" 2>&1 || bad "explain conv custom: exit $?"
expect_in "$TMP/c2" "= [[-4,-4],[-4,-4]]" "explain conv custom"
"$CNN" explain conv --input "1,2,3;4,5,6;7,8,9" --filter "1" --stride 2 --pad 1 >"$TMP/c3" 2>&1 ||
    bad "explain conv stride/pad: exit $?"
expect_in "$TMP/c3" "= [[0,0,0],[0,5,0],[0,0,0]]" "explain conv stride 2 pad 1"
"$CNN" explain pool --input "1,5,2;7,3,9;4,8,6" --size 2 --stride 1 >"$TMP/p2" 2>&1 || bad "explain pool custom: exit $?"
expect_in "$TMP/p2" "= [[7,9],[8,9]]" "explain pool custom"
"$CNN" explain pool --input "1,2;3,4" --size 2 --avg >"$TMP/p3" 2>&1 || bad "explain pool avg: exit $?"
expect_in "$TMP/p3" "= [[2.5]]" "explain pool avg"
expect_fail "explain ragged matrix" "$CNN" explain conv --input "1,2;3"
expect_fail "explain bad number" "$CNN" explain conv --input "1,x"
expect_fail "explain filter too big" "$CNN" explain conv --input "1,2;3,4" --filter "1,2,3;4,5,6;7,8,9"
expect_fail "explain unknown topic" "$CNN" explain dense

# ---- weights trained here, a few steps ----
if ! "$CNN" train "$MODEL" --data "$DATA" --steps 25 --batch 32 --threads 2 --quiet --out "$TMP/w.safetensors" \
    >"$TMP/train" 2>"$TMP/train.err"; then
    bad "train: exit status"
    sed 's/^/    /' "$TMP/train.err"
    finish
fi
[ -s "$TMP/train.err" ] && bad "train --quiet wrote to stderr: $(head -c 200 "$TMP/train.err")" || ok

# ---- predict ----
"$CNN" predict "$TMP/w.safetensors" --model "$MODEL" --data "$DATA" --index 1 >"$TMP/pred" 2>&1 || bad "predict: exit $?"
expect_in "$TMP/pred" "test image 1 of" "predict header"
[ "$(grep -cE '^  [1-5]\. ' "$TMP/pred")" -eq 5 ] && ok || bad "predict: not 5 ranked lines"
grep -qE '(T-shirt/top|Trouser|Pullover|Dress|Coat|Sandal|Shirt|Sneaker|Bag|Ankle boot)' "$TMP/pred" && ok ||
    bad "predict: no Fashion-MNIST class names"
"$CNN" predict "$TMP/w.safetensors" --model "$MODEL" --data "$DATA" --index 1 --json --top 10 >"$TMP/pj" 2>&1 ||
    bad "predict --json: exit $?"
sum=$(grep -o '"probability":[^,}]*' "$TMP/pj" | cut -d: -f2 | awk '{s+=$1} END {printf "%.3f", s}')
[ "$sum" = "1.000" ] && ok || bad "predict --json --top 10: probabilities sum to $sum"

# ---- viz: feature maps and filters, a PNG input written by viz itself ----
"$CNN" viz "$TMP/w.safetensors" --model "$MODEL" --data "$DATA" --index 0 --layer conv1 -o "$TMP/fm.png" \
    >"$TMP/viz" 2>&1 || bad "viz conv1: exit $?"
expect_in "$TMP/viz" "32 feature maps of conv1" "viz conv1"
size=$(png_size "$TMP/fm.png") || size=
printed=$(sed -nE 's/.*; ([0-9]+)x([0-9]+) pixels$/\1 \2/p' "$TMP/viz")
[ -n "$size" ] && [ "$size" = "$printed" ] && ok || bad "viz conv1: PNG size '$size', printed '$printed'"
# 32 maps of 28x28 at scale 2 in 8 columns, 2-pixel gaps: 8*(56+2)+2 x 4*(56+2)+2
[ "$size" = "466 234" ] && ok || bad "viz conv1: grid $size, expected 466 234"
"$CNN" viz "$TMP/w.safetensors" --model "$MODEL" --data "$DATA" --index 0 --layer fc2 -o "$TMP/fc.png" \
    >"$TMP/viz2" 2>&1 || bad "viz fc2: exit $?"
"$CNN" viz "$TMP/w.safetensors" --model "$MODEL" --layer conv1 --filters -o "$TMP/filt.png" >"$TMP/viz3" 2>&1 ||
    bad "viz --filters: exit $?"
expect_in "$TMP/viz3" "32 filters of conv1" "viz --filters"
size=$(png_size "$TMP/filt.png") || size=
[ "$size" = "802 102" ] && ok || bad "viz --filters: grid $size, expected 802 102"
"$CNN" viz "$TMP/w.safetensors" --model "$MODEL" --layer conv2 --filters --scale 2 -o "$TMP/f2.png" >/dev/null 2>&1 &&
    size=$(png_size "$TMP/f2.png") && [ "$size" = "258 514" ] && ok || bad "viz conv2 --filters: '$size'"
# predict and viz on an image file (the feature-map PNG viz wrote: any PNG will do)
"$CNN" predict "$TMP/w.safetensors" --model "$MODEL" "$TMP/fm.png" "$TMP/filt.png" >"$TMP/pf" 2>&1 ||
    bad "predict PNG files: exit $?"
[ "$(grep -cE '^  1\. ' "$TMP/pf")" -eq 2 ] && ok || bad "predict PNG files: not two results"
"$CNN" viz "$TMP/w.safetensors" --model "$MODEL" "$TMP/fm.png" --layer relu1 -o "$TMP/fm2.png" >/dev/null 2>&1 &&
    png_size "$TMP/fm2.png" >/dev/null && ok || bad "viz on a PNG file"
if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import PIL' 2>/dev/null; then
    /usr/bin/python3 -c 'from PIL import Image; Image.new("RGB",(50,70),(200,30,30)).save("'"$TMP"'/x.jpg")'
    "$CNN" predict "$TMP/w.safetensors" --model "$MODEL" "$TMP/x.jpg" --invert >"$TMP/pjpg" 2>&1 &&
        grep -q 'x.jpg (50x70 RGB, resized, inverted)' "$TMP/pjpg" && ok || bad "predict JPEG: $(cat "$TMP/pjpg")"
    head -c 300 "$TMP/x.jpg" >"$TMP/trunc.jpg"
    expect_fail "truncated JPEG" "$CNN" predict "$TMP/w.safetensors" --model "$MODEL" "$TMP/trunc.jpg"
fi

# ---- bad inputs ----
head -c 60 "$TMP/fm.png" >"$TMP/corrupt.png"
expect_fail "corrupt PNG" "$CNN" predict "$TMP/w.safetensors" --model "$MODEL" "$TMP/corrupt.png"
expect_fail "corrupt PNG (viz)" "$CNN" viz "$TMP/w.safetensors" --model "$MODEL" "$TMP/corrupt.png" --layer conv1 -o "$TMP/o.png"
echo "hello" >"$TMP/text.png"
expect_fail "text file as image" "$CNN" predict "$TMP/w.safetensors" --model "$MODEL" "$TMP/text.png"
: >"$TMP/empty.jpg"
expect_fail "empty file as image" "$CNN" predict "$TMP/w.safetensors" --model "$MODEL" "$TMP/empty.jpg"
expect_fail "missing image" "$CNN" predict "$TMP/w.safetensors" --model "$MODEL" "$TMP/nope.png"
expect_fail "missing layer" "$CNN" viz "$TMP/w.safetensors" --model "$MODEL" --data "$DATA" --index 0 --layer nope -o "$TMP/o.png"
expect_in "$TMP/err" "conv1" "missing layer lists the layers"
expect_fail "filters of a non-conv layer" "$CNN" viz "$TMP/w.safetensors" --model "$MODEL" --layer fc1 --filters -o "$TMP/o.png"
expect_fail "index out of range" "$CNN" predict "$TMP/w.safetensors" --model "$MODEL" --data "$DATA" --index 500
# weights written by cnn train hold their model text: --model may be left out (issue 4/6: checkpoints)
if "$CNN" predict "$TMP/w.safetensors" "$TMP/fm.png" >/dev/null 2>&1; then ok; else bad "predict without --model"; fi
expect_fail "wrong weights file" "$CNN" predict "$TMP/fm.png" --model "$MODEL" "$TMP/fm.png"
expect_fail "viz without -o" "$CNN" viz "$TMP/w.safetensors" --model "$MODEL" --layer conv1 --filters

# ---- train progress: pipe (plain lines), pseudo-terminal (\r redraws), --quiet ----
"$CNN" train "$MODEL" --data "$DATA" --steps 20 --batch 32 --threads 2 >"$TMP/t.out" 2>"$TMP/t.err" ||
    bad "train (pipe): exit $?"
grep -q '^train: epoch 1/1  batch [0-9]*/63  loss [0-9.]*  acc [0-9.]*  [0-9]* img/s  ETA ' "$TMP/t.err" && ok ||
    bad "train (pipe): no plain progress lines: $(head -c 300 "$TMP/t.err")"
if LC_ALL=C grep -q $'[\r\033]' "$TMP/t.err" "$TMP/t.out"; then bad "train (pipe): control characters"; else ok; fi
if command -v script >/dev/null 2>&1; then
    script -qec "'$CNN' train '$MODEL' --data '$DATA' --steps 20 --batch 32 --threads 2" "$TMP/typescript" \
        >/dev/null 2>&1 </dev/null
    if LC_ALL=C grep -q $'\repoch 1/1  batch ' "$TMP/typescript" && LC_ALL=C grep -q $'\033\\[K' "$TMP/typescript"; then
        ok
    else
        bad "train (terminal): no in-place progress line"
    fi
    grep -q '^train: epoch' "$TMP/typescript" && bad "train (terminal): plain progress lines on a terminal" || ok
    grep -q 'epoch 1/1  loss ' "$TMP/typescript" && ok || bad "train (terminal): no epoch line"
fi
finish
