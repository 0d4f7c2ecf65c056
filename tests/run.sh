#!/bin/sh
# Runs every unit-test program in build/tests (t_*), adds up their summary
# lines, and ends with "N passed, N failed". A program that dies without its
# summary line counts as one failure.
set -u
dir=${1:-build/tests}
pass=0
fail=0
for t in "$dir"/t_*; do
	[ -x "$t" ] || continue
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
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
