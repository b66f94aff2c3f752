#!/usr/bin/env bash
# cli_data.sh — part "data" through the cnn tool: class names end to end and image datasets.
#   - train on the shipped Fashion-MNIST sample: the --out file stores the ten names (metadata cnn.classes);
#   - an IDX folder whose name says nothing, with a classes.txt: train --out, then predict on a PNG (no
#     --data: the names can only come from the file), predict --data, eval's confusion rows, report;
#   - predict --save-image writes the exact network input as a PNG (predict on it gives the same numbers);
#   - an image folder train/<class>/*.png, test/<class>/*.png made from test images with --save-image, plus
#     a text file named .png and an empty file: train 2 steps says "(images)", warns about each broken file
#     by name, and predict shows the folder names;
#   - --list / --test-list with class-name labels; a bad line is one "cnn:" error naming file:line.
# usage: bash tests/cli_data.sh /path/to/cnn
set -u
CNN=${1:?usage: cli_data.sh /path/to/cnn}
SRC=${CNN_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
DATA=$SRC/tests/data/fmnist-sample
MODEL=$SRC/models/lenet5.cnn
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cnn-cli-data.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() {
    fail=$((fail + 1))
    printf 'FAIL: %s\n' "$*"
}
expect_in() { if grep -qF -- "$2" "$1"; then ok; else bad "$3: '$2' not in output"; sed 's/^/    /' "$1" | head -n 30; fi; }
expect_not_in() { if grep -qF -- "$2" "$1"; then bad "$3: '$2' in output"; else ok; fi; }
run() { # NAME CMD...: must succeed
    local name=$1
    shift
    if "$@" >"$TMP/out" 2>"$TMP/err"; then ok; else bad "$name: exit status $?"; sed 's/^/    /' "$TMP/err" | head -n 20; fi
}
if ! "$CNN" predict --help | grep -q -- --save-image; then bad "predict has no --save-image"; fi
T="--steps 2 --batch 8 --threads 1 --seed 3"

# 1. Fashion-MNIST sample: the names go into the --out file
run "train fmnist" "$CNN" train "$MODEL" --data "$DATA" $T --out "$TMP/f.st"
if grep -aqF 'cnn.classes' "$TMP/f.st" && grep -aqF 'Ankle boot' "$TMP/f.st"; then ok; else bad "no cnn.classes in $TMP/f.st"; fi

# 2. an anonymous IDX folder with classes.txt
mkdir -p "$TMP/plain"
cp "$DATA"/*.gz "$TMP/plain/"
printf 'zero\none\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\n' >"$TMP/plain/classes.txt"
run "train classes.txt" "$CNN" train "$MODEL" --data "$TMP/plain" $T --out "$TMP/p.st" --checkpoint "$TMP/p.ck"
run "save-image" "$CNN" predict "$TMP/p.st" --data "$TMP/plain" --index 2 --save-image "$TMP/two.png" --json
cp "$TMP/out" "$TMP/json_data"
expect_in "$TMP/err" "input image written to $TMP/two.png" "save-image message"
if [ "$(head -c 8 "$TMP/two.png" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ]; then ok; else bad "two.png is not a PNG"; fi
run "predict png" "$CNN" predict "$TMP/p.st" "$TMP/two.png" --json
# the same probabilities from the PNG as from the IDX image (the PNG holds the exact input bytes)
a=$(sed 's/.*"top"://' "$TMP/json_data")
b=$(sed 's/.*"top"://' "$TMP/out")
if [ "$a" = "$b" ]; then ok; else bad "predict on the saved PNG differs: $a vs $b"; fi
# names from the file: a PNG alone has no data folder to take them from
run "predict png names" "$CNN" predict "$TMP/p.st" "$TMP/two.png" --top 10
for n in zero one two three nine; do expect_in "$TMP/out" " $n " "predict names from the weights file"; done
expect_not_in "$TMP/out" "T-shirt" "predict: not Fashion-MNIST's names"
run "predict checkpoint" "$CNN" predict "$TMP/p.ck" --data "$TMP/plain" --index 2
expect_in "$TMP/out" "true: " "predict --data true label"
label=$(sed -n 's/.*"label":\([0-9]*\).*/\1/p' "$TMP/json_data")
names=(zero one two three four five six seven eight nine)
expect_in "$TMP/out" "true: ${names[$label]}" "predict --data true name"
# eval: the confusion rows named; from the checkpoint too
run "eval names" "$CNN" eval "$TMP/p.st" --data "$DATA"
expect_in "$TMP/out" "9 nine" "eval rows named from the file"
run "eval checkpoint" "$CNN" eval "$TMP/p.ck" --data "$TMP/plain"
expect_in "$TMP/out" "3 three" "eval rows (checkpoint)"
run "report names" "$CNN" report "$TMP/p.st" --data "$DATA" -o "$TMP/rep"
expect_in "$TMP/rep/index.html" "seven" "report class names from the file"

# 3. an image folder made from test images
fnames=("T-shirt" Trouser Pullover Dress Coat Sandal Shirt Sneaker Bag "Ankle boot")
for i in 0 1 2 3 4 5 6 7 8 9 10 11 12 13; do
    split=train
    [ "$i" -ge 10 ] && split=test
    "$CNN" predict "$TMP/f.st" --data "$DATA" --index "$i" --save-image "$TMP/i.png" --json >"$TMP/j" 2>/dev/null ||
        bad "save-image $i"
    l=$(sed -n 's/.*"label":\([0-9]*\).*/\1/p' "$TMP/j")
    d="$TMP/img/$split/${fnames[$l]}"
    mkdir -p "$d"
    mv "$TMP/i.png" "$d/$i.png"
done
mkdir -p "$TMP/img/train/Bag"
echo "not an image" >"$TMP/img/train/Bag/notes.png"
: >"$TMP/img/train/Bag/empty.jpg"
# a model for as many classes as there are folders, RGB at another size (gray 28x28 files: converted, resized)
k=$( (ls "$TMP/img/train"; ls "$TMP/img/test") | sort -u | wc -l)
printf 'input c=3 h=20 w=20\nconv2d k=4 kh=3 kw=3\nrelu\nmaxpool2d size=2 stride=2\nflatten\ndense out=%d\nsoftmax_ce\n' \
    "$k" >"$TMP/k.cnn"
run "train images" "$CNN" train "$TMP/k.cnn" --data "$TMP/img" $T --out "$TMP/i.st"
expect_in "$TMP/err" "(images): " "train says the kind"
expect_in "$TMP/err" "notes.png: skipped" "warning names the text file"
expect_in "$TMP/err" "empty.jpg: skipped" "warning names the empty file"
expect_in "$TMP/err" ", 3x20x20, $k classes" "train: image shape and class count"
run "predict image folder names" "$CNN" predict "$TMP/i.st" "$TMP/img/test"/*/10.png --top 3 --json
if grep -q '"name":"' "$TMP/out"; then ok; else bad "predict after an image-folder train shows no names"; fi

# 4. --list and --test-list with names; a bad line
( cd "$TMP/img" && find train -name '*.png' ! -name notes.png | sort | while read -r p; do
    c=${p#train/}
    c=${c%/*}
    printf '%s\t%s\n' "$p" "$c" # a tab: "Ankle boot" has a space
done ) >"$TMP/img/train.txt"
( cd "$TMP/img" && find test -name '*.png' | sort | while read -r p; do c=${p#test/}; printf '%s\t%s\n' "$p" "${c%/*}"; done ) \
    >"$TMP/img/test.txt"
printf 'T-shirt\nTrouser\nPullover\nDress\nCoat\nSandal\nShirt\nSneaker\nBag\nAnkle boot\n' >"$TMP/img/classes.txt"
run "train list" "$CNN" train "$MODEL" --list "$TMP/img/train.txt" --test-list "$TMP/img/test.txt" $T --out "$TMP/l.st"
expect_in "$TMP/err" "(list): " "train says list"
run "predict list" "$CNN" predict "$TMP/l.st" "$TMP/img/test"/*/10.png --top 10
expect_in "$TMP/out" "Ankle boot" "names from a list's classes.txt"
printf 'train/x.png Bag\nonlyapath\n' >"$TMP/img/bad.txt"
"$CNN" train "$MODEL" --list "$TMP/img/bad.txt" $T >"$TMP/out" 2>"$TMP/err"
rc=$?
if [ "$rc" -eq 1 ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -qF "bad.txt:2:" "$TMP/err"; then ok; else
    bad "bad list line: rc $rc"
    sed 's/^/    /' "$TMP/err"
fi

echo "cli_data: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
