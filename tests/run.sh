#!/bin/sh
# Runs every unit-test program in the given directories (default build/tests;
# programs named t_*), adds up their summary lines, and ends with "N passed,
# N failed". A program that dies without its summary line counts as one
# failure. Lines a program prints starting "#> " (what it measured) are shown.
set -u
[ $# -gt 0 ] || set -- build/tests
pass=0
fail=0
for t in $(for d in "$@"; do ls -d "$d"/t_* 2>/dev/null; done); do
	[ -x "$t" ] || continue
	dir=$(dirname "$t")
	name=$(basename "$t")
	out=$("$t" 2>"$dir/$name.stderr")
	rc=$?
	src=${name%_tsan} # a sanitizer build reports under its source's name
	line=$(printf '%s\n' "$out" | grep "^# $src: pass=" | tail -n 1)
	if [ -z "$line" ]; then
		echo "FAIL $name: exited $rc without a summary line"
		sed 's/^/  /' "$dir/$name.stderr" | tail -n 20
		fail=$((fail + 1))
		continue
	fi
	p=$(echo "$line" | sed 's/.*pass=\([0-9]*\).*/\1/')
	f=$(echo "$line" | sed 's/.*fail=\([0-9]*\).*/\1/')
	pass=$((pass + p))
	fail=$((fail + f))
	if [ "$f" -ne 0 ] || [ "$rc" -ne 0 ]; then
		echo "FAIL $name: pass=$p fail=$f rc=$rc"
		sed 's/^/  /' "$dir/$name.stderr" | tail -n 40
		[ "$f" -eq 0 ] && fail=$((fail + 1))
	else
		echo "ok   $name: pass=$p"
	fi
	printf '%s\n' "$out" | grep '^#> ' | sed 's/^#> /     /' # a test's report lines
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
