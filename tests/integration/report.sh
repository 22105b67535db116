#!/bin/sh
# report.sh - `kheo report` and `kheo ls --search` end to end, on a small
# province whose counts are worked out by hand below.  Prints TAP.
#
#   BUILD=build sh tests/integration/report.sh      (from the repository root)
#
# The data (every model under dak-nong; units named in sys_unit):
#   A  cu-jut/ea-po      collective  economy          recognized  reg 2024-03-01  rec 2025-02-10
#   B  cu-jut/ea-po      individual  culture_society  registered  reg 2025-04-01
#   C  cu-jut/tam-thang  collective  economy          replicated  reg 2023-05-01  rec 2024-12-31
#   D  dak-mil/duc-minh  individual  party_building   recognized  reg 2025-01-15  rec 2025-06-30
#   E  dak-mil/duc-minh  collective  defence_security withdrawn   reg 2024-01-01
#   F  dak-mil/duc-minh  collective  economy          review      reg 2025-03-03  (deleted)
# Recognised means status recognized or replicated: A, C and D.
# Visits: A inspection 2025-10-01, C supervision 2025-01-01, D review_mid
# 2025-11-01 (neither inspection nor supervision).
set -u

ROOT=$(pwd)
. "$ROOT/tests/integration/lib/cli.sh"
cli_setup report

P="-C $T/p"
k $P init --role province --unit dak-nong >/dev/null || exit 1
k $P put sys_unit slug=dak-nong/cu-jut name="Huyện Cư Jút" >/dev/null
k $P put sys_unit slug=dak-nong/dak-mil name='Huyện Đắk Mil, "Đắk Nông"' \
	>/dev/null
CJ=dak-nong/cu-jut
DM=dak-nong/dak-mil
A=$(k $P put model name='Tổ hợp tác "Bò vàng"' unit=$CJ/ea-po \
	kind=collective field=economy status=recognized \
	registered_on=2024-03-01 recognized_on=2025-02-10 year=2024)
B=$(k $P put model name="Câu lạc bộ cồng chiêng" unit=$CJ/ea-po \
	kind=individual field=culture_society status=registered \
	registered_on=2025-04-01 year=2025)
C=$(k $P put model name="Nhóm hộ nuôi cá lồng" unit=$CJ/tam-thang \
	kind=collective field=economy status=replicated \
	registered_on=2023-05-01 recognized_on=2024-12-31 year=2023)
D=$(k $P put model name="Chi bộ bốn tốt, Đắk Nông" unit=$DM/duc-minh \
	kind=individual field=party_building status=recognized \
	registered_on=2025-01-15 recognized_on=2025-06-30 year=2025)
E=$(k $P put model name="Tổ tuần tra biên giới" unit=$DM/duc-minh \
	kind=collective field=defence_security status=withdrawn \
	registered_on=2024-01-01 year=2024)
F=$(k $P put model name="Mô hình đã xóa" unit=$DM/duc-minh \
	kind=collective field=economy status=review registered_on=2025-03-03)
k $P del model "$F" >/dev/null
k $P put visit model="$A" date=2025-10-01 kind=inspection unit=$CJ/ea-po \
	>/dev/null
k $P put visit model="$C" date=2025-01-01 kind=supervision \
	unit=$CJ/tam-thang >/dev/null
k $P put visit model="$D" date=2025-11-01 kind=review_mid unit=$DM/duc-minh \
	>/dev/null
[ -n "$A" ] && [ -n "$E" ] && [ -n "$F" ]
check "the sample province is recorded" $? "A=$A E=$E F=$F"

# rows of a JSON report as "dim1/dim2=models,registered,recognized[,overdue]"
rows() {
	python3 -c 'import json, sys
d = json.load(sys.stdin)
ms = d["measures"]
for r in d["rows"] + [dict(d["total"], _total=1)]:
    key = "total" if "_total" in r else "/".join(str(r[b]) for b in d["by"])
    print(key + "=" + ",".join(str(r[m]) for m in ms))'
}

# --- grouping, labels, totals -------------------------------------------
run $P report --by unit --unit dak-nong --json
got=$(rows <"$T/out" | tr '\n' ' ')
want="dak-nong/cu-jut=3,3,2 dak-nong/dak-mil=2,2,1 total=5,5,3 "
[ "$got" = "$want" ]
check "by unit: one row per district, the deleted model left out, totals" \
	$? "got:  $got" "want: $want"

run $P report --by unit --json
got=$(rows <"$T/out" | tr '\n' ' ')
[ "$got" = "dak-nong/cu-jut=3,3,2 dak-nong/dak-mil=2,2,1 total=5,5,3 " ]
check "without --unit, units group one level below the node's own" $? "got: $got"

run $P report --by unit --unit dak-nong
grep -q "^Huyện Cư Jút  *3  *3  *2$" "$T/out" &&
	grep -q '^Huyện Đắk Mil, "Đắk Nông"  *2  *2  *1$' "$T/out" &&
	grep -q "^Tổng cộng  *5  *5  *3$" "$T/out" &&
	head -n 1 "$T/out" | grep -q "^Đơn vị  *Số mô hình"
check "the table names units from sys_unit and speaks Vietnamese" $? \
	"$(out1)"

run $P report --by unit --unit dak-nong --lang en
head -n 1 "$T/out" | grep -q "^Unit  *Models  *Registered  *Recognised$" &&
	grep -q "^Total  *5" "$T/out"
check "--lang en labels in English" $? "$(out1)"

run $P report --by unit --unit $CJ --json
got=$(rows <"$T/out" | tr '\n' ' ')
want="dak-nong/cu-jut/ea-po=2,2,1 dak-nong/cu-jut/tam-thang=1,1,1 total=3,3,2 "
[ "$got" = "$want" ]
check "--unit narrows to a district and groups by its communes" $? \
	"got:  $got" "want: $want"

# models recognised in a period, collective / individual
run $P report --by kind --from 2025-01-01 --to 2025-12-31 --json
got=$(rows <"$T/out" | tr '\n' ' ')
want="collective=3,0,1 individual=2,2,1 total=5,2,2 "
[ "$got" = "$want" ]
check "recognised in 2025 split by collective / individual" $? \
	"got:  $got" "want: $want"

# registered and recognised since a date, by field
run $P report --by field --from 2025-01-01 --json
got=$(rows <"$T/out" | tr '\n' ' ')
want="culture_society=1,1,0 defence_security=1,0,0 economy=2,0,1 party_building=1,1,1 total=5,2,2 "
[ "$got" = "$want" ]
check "registered and recognised since 2025-01-01 split by field" $? \
	"got:  $got" "want: $want"

run $P report --by field --from 2025-01-01
grep -q "^Xây dựng Đảng và hệ thống chính trị  *1  *1  *1$" "$T/out" &&
	head -n 1 "$T/out" | grep -q "^Lĩnh vực"
check "enum values print with the schema's Vietnamese labels" $? "$(out1)"

run $P report --by status,year --json
got=$(rows <"$T/out" | tr '\n' ' ')
want="recognized/2024=1,1,1 recognized/2025=1,1,1 registered/2025=1,1,0 replicated/2023=1,1,1 withdrawn/2024=1,1,0 total=5,5,3 "
[ "$got" = "$want" ]
check "two dimensions at once (status, year)" $? "got:  $got" "want: $want"

# --- visits: no inspection or supervision in the last 6 months ------------
run $P report --by unit --unit dak-nong --overdue 6 --as-of 2025-11-27 --json
got=$(rows <"$T/out" | tr '\n' ' ')
want="dak-nong/cu-jut=3,3,2,2 dak-nong/dak-mil=2,2,1,1 total=5,5,3,3 "
[ "$got" = "$want" ]
check "overdue: B and C (visit too old) in Cư Jút, D (review only) in Đắk Mil" \
	$? "got:  $got" "want: $want"
run $P report --overdue 6 --as-of 2025-11-27 --list --json
python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
got = {m["id"]: m["last_visit"] for m in d["overdue_models"]}
want = {sys.argv[2]: None, sys.argv[3]: "2025-01-01", sys.argv[4]: None}
assert got == want, (got, want)' "$T/out" "$B" "$C" "$D"
check "--list names the overdue models, with C's last supervision and none for D's review" $? "$(out1)"
run $P report --overdue 6 --as-of 2025-11-27 --list
grep -q "^  $(echo "$C" | cut -c1-8)  $CJ/tam-thang: Nhóm hộ nuôi cá lồng  (lần cuối 2025-01-01)$" "$T/out"
check "the table lists them under it, with the last visit" $? "$(out1)"
run $P report --list
[ "$rc" -eq 2 ]
check "--list without --overdue is a usage error" $? "exit $rc"
run $P report --overdue 12 --as-of 2025-11-27 --json
got=$(rows <"$T/out" | tr '\n' ' ')
[ "$got" = "total=5,5,3,2 " ]
check "a longer window counts C's supervision: 2 overdue" $? "got: $got"

# --- CSV ------------------------------------------------------------------
run $P report --by unit --unit dak-nong --format csv --out "$T/r.csv"
[ "$rc" -eq 0 ] && [ "$(head -c 3 "$T/r.csv" | od -An -tx1 | tr -d ' ')" = efbbbf ]
check "CSV starts with the UTF-8 byte-order mark" $? "exit $rc $(err1)"
python3 - "$T/r.csv" <<'EOF'
import sys
b = open(sys.argv[1], 'rb').read()
want = ('\ufeffunit,unit_name,models,registered,recognized\r\n'
        'dak-nong/cu-jut,Huyện Cư Jút,3,3,2\r\n'
        'dak-nong/dak-mil,"Huyện Đắk Mil, ""Đắk Nông""",2,2,1\r\n'
        'total,,5,5,3\r\n').encode()
if b != want:
    print(repr(b)); print(repr(want)); sys.exit(1)
EOF
check "CSV bytes: schema names in the header, a name with a comma and quotes quoted, CRLF" $?
python3 -c 'import csv, sys
rows = list(csv.reader(open(sys.argv[1], encoding="utf-8-sig", newline="")))
assert rows[2][1] == "Huyện Đắk Mil, \"Đắk Nông\"", rows' "$T/r.csv"
check "a CSV reader reads the quoted name back whole" $?

# --- XLSX -------------------------------------------------------------------
run $P report --by unit --unit dak-nong --overdue 6 --as-of 2025-11-27 \
	--format xlsx --out "$T/r.xlsx"
check "an XLSX workbook is written" $rc "$(err1)"
python3 - "$T/r.xlsx" <<'EOF'
# Read the workbook back with the standard library: shared strings and the
# first sheet's cells, as a spreadsheet would.
import re, sys, zipfile, xml.etree.ElementTree as ET
ns = {'m': 'http://schemas.openxmlformats.org/spreadsheetml/2006/main'}
z = zipfile.ZipFile(sys.argv[1])
strings = [''.join(t.text or '' for t in si.iter('{%s}t' % ns['m']))
           for si in ET.fromstring(z.read('xl/sharedStrings.xml')).findall('m:si', ns)]
sheet = ET.fromstring(z.read('xl/worksheets/sheet1.xml'))
cells = {}
for c in sheet.iter('{%s}c' % ns['m']):
    v = c.find('m:v', ns)
    if v is None:
        continue
    cells[c.get('r')] = strings[int(v.text)] if c.get('t') == 's' else float(v.text)
want = {'A3': 'Đơn vị', 'B3': 'Số mô hình', 'A4': 'Huyện Cư Jút', 'B4': 3.0,
        'E4': 2.0, 'A5': 'Huyện Đắk Mil, "Đắk Nông"', 'B5': 2.0, 'D5': 1.0,
        'A6': 'Tổng cộng', 'B6': 5.0, 'E6': 3.0}
bad = {k: (cells.get(k), v) for k, v in want.items() if cells.get(k) != v}
if bad:
    print(bad); sys.exit(1)
if 'Báo cáo' not in z.read('xl/workbook.xml').decode():
    print('sheet name'); sys.exit(1)
EOF
check "the workbook reads back: Vietnamese labels, unit names, counts as numbers, totals" $?

run $P report --overdue 6 --as-of 2025-11-27 --list --format xlsx \
	--out "$T/o.xlsx"
python3 - "$T/o.xlsx" <<'EOF'
import sys, zipfile, xml.etree.ElementTree as ET
ns = {'m': 'http://schemas.openxmlformats.org/spreadsheetml/2006/main'}
z = zipfile.ZipFile(sys.argv[1])
strings = [''.join(t.text or '' for t in si.iter('{%s}t' % ns['m']))
           for si in ET.fromstring(z.read('xl/sharedStrings.xml')).findall('m:si', ns)]
rows = []
for row in ET.fromstring(z.read('xl/worksheets/sheet2.xml')).iter('{%s}row' % ns['m']):
    rows.append([strings[int(c.find('m:v', ns).text)]
                 for c in row.findall('m:c', ns) if c.find('m:v', ns) is not None])
assert rows[0][:4] == ['Đơn vị', 'Tên mô hình', 'Trạng thái',
                       'Lần kiểm tra, giám sát cuối'], rows[0]
assert len(rows) == 4, rows
c = [r for r in rows if r[1] == 'Nhóm hộ nuôi cá lồng'][0]
assert c[2] == 'Đã nhân rộng' and c[3] == '2025-01-01', c
assert 'Chưa kiểm tra' in z.read('xl/workbook.xml').decode()
EOF
check "with --list the workbook has a sheet naming the overdue models" $?

# --- folded search ------------------------------------------------------------
run $P ls model --search "dak nong" --json
got=$(json '" ".join(r["id"] for r in d)' <"$T/out")
[ "$got" = "$D" ]
check "ls --search 'dak nong' finds 'Đắk Nông' (tones and đ folded)" $? \
	"got: $got want: $D"
run $P ls model --search "BÒ VÀNG" --json
got=$(json '" ".join(r["id"] for r in d)' <"$T/out")
[ "$got" = "$A" ]
check "search ignores case and finds a phrase inside quotes" $? "got: $got"
run $P ls model --search "cong   chieng" --where kind=individual --json
got=$(json '" ".join(r["id"] for r in d)' <"$T/out")
[ "$got" = "$B" ]
check "search with runs of spaces, together with --where" $? "got: $got"
run $P ls model --search "mo hinh da xoa" --json
[ "$(json 'len(d)' <"$T/out")" = 0 ]
check "a deleted record is not found" $? "$(out1)"
run $P ls model --search "100%" --json
[ "$rc" -eq 0 ] && [ "$(json 'len(d)' <"$T/out")" = 0 ]
check "LIKE's % in a search is a character, not a wildcard" $? "$(out1)"

# --- refusals -------------------------------------------------------------------
run $P report --by colour
[ "$rc" -eq 1 ] && grep -q '"colour" is not one of unit' "$T/err"
check "an unknown dimension is refused, named" $? "exit $rc $(err1)"
run $P report --from 2025-13-01
[ "$rc" -eq 1 ] && grep -q "YYYY-MM-DD" "$T/err"
check "a malformed date is refused" $? "exit $rc $(err1)"
run $P report --to 2025-02-29
[ "$rc" -eq 1 ] && grep -q -- "--to 2025-02-29 is not a date" "$T/err"
check "a day the calendar lacks is refused" $? "exit $rc $(err1)"
run $P report --by kind,kind
[ "$rc" -eq 1 ] && grep -q -- "--by: kind twice" "$T/err"
check "a dimension given twice is refused" $? "exit $rc $(err1)"
run $P report --format pdf
[ "$rc" -eq 2 ] && grep -q "table, csv, json, xlsx" "$T/err"
check "an unknown format is a usage error" $? "exit $rc $(err1)"
run $P report --format xlsx
[ "$rc" -eq 2 ] && grep -q "needs --out" "$T/err"
check "xlsx without --out is a usage error" $? "exit $rc $(err1)"
run $P report --overdue 0
[ "$rc" -eq 2 ]
check "--overdue 0 is a usage error" $? "exit $rc $(err1)"

finish
