package testenv

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// Smaps walks /proc/PID/smaps (Linux) and calls fn for each size line (Rss, Pss, ...)
// with the path of the mapping it belongs to: "" or "[heap]"-style names for anonymous
// memory.
func Smaps(tb testing.TB, pid int, fn func(path, field string, kb int64)) {
	tb.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	path := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		field, isSize := strings.CutSuffix(fields[0], ":")
		if !isSize { // a mapping's header: range perms offset dev inode [path]
			path = ""
			if len(fields) >= 6 {
				path = fields[5]
			}
			continue
		}
		if len(fields) < 3 || fields[2] != "kB" {
			continue // VmFlags, THPeligible and the like
		}
		kb, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil {
			tb.Fatalf("smaps: %q: %v", sc.Text(), err)
		}
		fn(path, field, kb)
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
}
