package cli

import "testing"

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]uint64{"": 0, "512": 512, "12GiB": 12 << 30, "8000MiB": 8000 << 20, "1.5G": 3 << 29, "64 mb": 64 << 20} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"x", "12XB", "-1G", "1.2.3G"} {
		if _, err := parseBytes(bad); err == nil {
			t.Errorf("parseBytes(%q) accepted", bad)
		}
	}
}
