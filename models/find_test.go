package models

import (
	"os"
	"path/filepath"
	"testing"
)

func TestFindByModelName(t *testing.T) {
	folder, elsewhere := t.TempDir(), t.TempDir()
	write := func(dir, name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("GGUF"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	inFolder := write(folder, "tiny.gguf")
	write(folder, "other.GGUF")
	write(folder, "tiny.txt")
	recent := write(elsewhere, "tiny.gguf")
	gone := filepath.Join(elsewhere, "gone.gguf")

	for _, tc := range []struct {
		name   string
		files  []string
		want   string
		wantOK bool
	}{
		{"tiny", []string{recent}, recent, true}, // the recent list first
		{"tiny", nil, inFolder, true},            // then the folder
		{"other", []string{recent}, filepath.Join(folder, "other.GGUF"), true},
		{"gone", []string{gone}, "", false}, // a recent file that is gone
		{"tiny.txt", nil, "", false},        // not a .gguf
		{"", []string{recent}, "", false},
	} {
		got, ok := Find(tc.name, folder, tc.files)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("Find(%q, folder, %v) = %q, %v; want %q, %v", tc.name, tc.files, got, ok, tc.want, tc.wantOK)
		}
	}
	if _, ok := Find("tiny", filepath.Join(folder, "missing"), nil); ok {
		t.Error("Find in a missing folder found something")
	}
}
