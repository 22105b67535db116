#!/bin/sh
# demo.sh - what `make demo` runs: a province, two district hubs and four
# commune devices of Đắk Nông, enrolled under the province's root,
# exchanging real changesets by bundle files (the sneakernet path), with
# the real kheo binary and nothing else.
#
#   sh tests/demo.sh [BUILD]          (KHEO_DEMO_DIR keeps the files there)
#
# Devices record models offline, two of them edit the same model at once,
# bundles go device -> hub -> province -> back down, the conflict shows and
# is resolved, a damaged bundle is refused whole, and every node ends with
# the same digest and a passing `kheo verify`.
set -eu

BUILD=${1:-build}
K="$(pwd)/$BUILD/kheo"
[ -x "$K" ] || { echo "demo: $K not built (make)" >&2; exit 1; }
dir=${KHEO_DEMO_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/kheo-demo-XXXXXX")}
mkdir -p "$dir"
cd "$dir"

say() { printf '\n== %s\n' "$*"; }
k() { "$K" "$@"; }

say "1. one changeset through proto/: encode, sign, frame, open, forge"
"$OLDPWD/$BUILD/demo_proto" | sed 's/^/   /'

say "2. nodes: a province, two district hubs, four commune devices"
k -C province init --role province --unit dak-nong >/dev/null
k -C hub-cujut init --role hub --unit dak-nong/cu-jut >/dev/null
k -C hub-dakmil init --role hub --unit dak-nong/dak-mil >/dev/null
k -C eapo init --role device --unit dak-nong/cu-jut/ea-po >/dev/null
k -C namdong init --role device --unit dak-nong/cu-jut/nam-dong >/dev/null
k -C ducminh init --role device --unit dak-nong/dak-mil/duc-minh >/dev/null
k -C thuanan init --role device --unit dak-nong/dak-mil/thuan-an >/dev/null
# enrolment, offline: the node asks, the issuer signs, the node accepts
# only with the root fingerprint it was told (docs/identity.md)
root=$(k -C province id --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
enrol() { # issuer node role unit
	k -C "$2" enroll request > "$2.request"
	k -C "$1" enroll sign "$2.request" --role "$3" --unit "$4" > "$2.cert"
	k -C "$2" enroll accept "$2.cert" --root "$root" >/dev/null
}
enrol province hub-cujut hub dak-nong/cu-jut
enrol province hub-dakmil hub dak-nong/dak-mil
enrol hub-cujut eapo collector dak-nong/cu-jut/ea-po
enrol hub-cujut namdong collector dak-nong/cu-jut/nam-dong
enrol hub-dakmil ducminh collector dak-nong/dak-mil/duc-minh
enrol hub-dakmil thuanan collector dak-nong/dak-mil/thuan-an
for n in province hub-cujut hub-dakmil eapo namdong ducminh thuanan; do
	printf '   %-11s %s\n' "$n" "$(k -C $n id --json |
		python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["node_role"], d["unit"], d["cert_role"], d["mode"], d["key"][:16] + "…")')"
done
echo "   root fingerprint (the province's key): ${root%????????????????????????????????????????????????}…"

say "3. offline work on the devices"
m1=$(k -C eapo put model name="Mô hình nuôi bò sinh sản" unit=dak-nong/cu-jut/ea-po \
	kind=collective field=economy status=registered year=2024 beneficiaries=42)
m2=$(k -C eapo put model name="Câu lạc bộ cồng chiêng buôn Ea Pô" unit=dak-nong/cu-jut/ea-po \
	kind=collective field=culture_society status=building year=2023)
m3=$(k -C namdong put model name="Tổ tự quản về môi trường" unit=dak-nong/cu-jut/nam-dong \
	kind=collective field=party_building status=registered year=2025)
m4=$(k -C ducminh put model name="Hộ trồng cà phê bền vững" unit=dak-nong/dak-mil/duc-minh \
	kind=individual field=economy status=review year=2022 beneficiaries=5)
m5=$(k -C thuanan put model name="Tuần tra an ninh thôn" unit=dak-nong/dak-mil/thuan-an \
	kind=collective field=defence_security status=registered year=2024)
k -C eapo set model "$m1" tags+="chăn nuôi" tags+=bò status=building
k -C thuanan del model "$m5"
echo "   5 models registered on 4 devices, one deleted again; no network"

say "4. bundles up: devices -> hubs -> province"
send() { # from to
	k -C "$1" bundle create "$1-to-$2.kheo" >/dev/null
	printf '   %-10s -> %-11s %s\n' "$1" "$2" "$(k -C "$2" bundle apply "$1-to-$2.kheo")"
}
send eapo hub-cujut
send namdong hub-cujut
send ducminh hub-dakmil
send thuanan hub-dakmil
send hub-cujut province
send hub-dakmil province

say "5. the same model edited at once on a device and at the hub"
send hub-cujut eapo
k -C eapo set model "$m1" beneficiaries=45
sleep 0.01
k -C hub-cujut set model "$m1" beneficiaries=48
send eapo hub-cujut
send hub-cujut eapo
k -C hub-cujut conflicts | sed 's/^/   /'
k -C hub-cujut set model "$m1" beneficiaries=46
echo "   resolved at the hub: beneficiaries=46 (a set that saw both values)"

say "6. a bundle damaged on the way (one bit flipped)"
k -C eapo set model "$m2" status=review
k -C eapo bundle create forged.kheo >/dev/null
python3 - "$dir/forged.kheo" <<'PY'
# one bit flipped in the middle of the file, as a bad SD card would
import sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
b[len(b) // 2] ^= 1
open(p, 'wb').write(b)
PY
if k -C hub-cujut bundle apply forged.kheo 2>err.txt; then
	echo "   a damaged bundle was accepted!" >&2
	exit 1
fi
printf '   damaged bundle refused whole: %s\n' "$(cat err.txt)"

say "7. everything everywhere: up again, then down to every device"
send eapo hub-cujut
send hub-cujut province
send hub-dakmil province
send province hub-cujut
send province hub-dakmil
for d in eapo namdong; do send hub-cujut $d; done
for d in ducminh thuanan; do send hub-dakmil $d; done

say "8. every node agrees, and every node verifies"
for n in province hub-cujut hub-dakmil eapo namdong ducminh thuanan; do
	printf '   %-11s digest %s  verify: %s\n' "$n" \
		"$(k -C $n digest --unit dak-nong | cut -c1-16)" \
		"$(k -C $n verify >/dev/null 2>&1 && echo ok || echo FAILED)"
done

say "9. the province's registry"
k -C province ls model | sed 's/^/   /'
live=$(k -C province ls model --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
echo "   $live live models (5 registered, 1 deleted)"
[ "$live" = 4 ] || { echo "demo: expected 4 live models" >&2; exit 1; }
a=$(k -C province digest --unit dak-nong)
for n in hub-cujut hub-dakmil eapo namdong ducminh thuanan; do
	[ "$(k -C $n digest --unit dak-nong)" = "$a" ] ||
		{ echo "demo: $n differs from the province" >&2; exit 1; }
done

say "done"
echo "   files: $dir (each folder is a node: try 'build/kheo -C $dir/province log',"
echo "   or sqlite3 $dir/province/kheo.db 'SELECT name, status FROM model')"
