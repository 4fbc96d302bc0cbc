package localefix_test

import (
	"bytes"
	"os/exec"
	"testing"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
)

// TestCUTF8LocaleIsQuiet guards the start-up of every subcommand on a "C.UTF-8" system:
// nothing but the command's own output, no Fyne locale error.
func TestCUTF8LocaleIsQuiet(t *testing.T) {
	for _, env := range []string{"LANG=C.UTF-8", "LC_ALL=C.UTF-8"} {
		cmd := exec.Command(testenv.Binary(t), "help")
		cmd.Env = []string{env, "HOME=" + t.TempDir()}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: beekeeper help: %v\n%s", env, err, stderr.String())
		}
		if stderr.Len() != 0 {
			t.Fatalf("%s: beekeeper help wrote to stderr: %q", env, stderr.String())
		}
	}
}
