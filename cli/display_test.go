package cli_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
)

// The desktop app started where no window can open says so and what to run instead,
// and starts nothing (no embedded Queen, no state written).
func TestGUIWithoutADisplayNamesTheFix(t *testing.T) {
	for _, tc := range []struct {
		name, display, want string
	}{
		{"DISPLAY unset", "", "DISPLAY is not set"},
		{"DISPLAY unreachable", ":93", `could not open a window on DISPLAY=":93"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			cmd := exec.Command(testenv.Binary(t))
			cmd.Env = append(withoutDisplay(os.Environ()), "BEEKEEPER_HOME="+home)
			if tc.display != "" {
				cmd.Env = append(cmd.Env, "DISPLAY="+tc.display)
			}
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("exit: %v, want code 1\n%s", err, out)
			}
			for _, want := range []string{tc.want, "beekeeper queen", "xvfb-run beekeeper"} {
				if !strings.Contains(string(out), want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			if strings.Contains(string(out), "goroutine ") || strings.Contains(string(out), "panic") {
				t.Errorf("output has a stack trace:\n%s", out)
			}
			if tc.display == "" {
				if entries, _ := os.ReadDir(home); len(entries) != 0 {
					t.Errorf("the state folder got %d entries (%s...), want none", len(entries), filepath.Join(home, entries[0].Name()))
				}
			}
		})
	}
}

func withoutDisplay(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "DISPLAY=") && !strings.HasPrefix(kv, "WAYLAND_DISPLAY=") {
			out = append(out, kv)
		}
	}
	return out
}
