// Package localefix owns one start-up detail: on systems whose locale is "C.UTF-8"
// (containers, CI), Fyne reads "C" as a language tag and logs an error from a package
// init, into every subcommand's output, worker logs included. Setting the variable to
// plain "C" keeps the same meaning and silences it. main imports this package first; it
// depends only on syscall, so Go initialises it before os and so before Fyne's locale code.
package localefix

import "syscall"

func init() {
	for _, name := range [...]string{"LC_ALL", "LC_MESSAGES", "LANG"} {
		v, ok := syscall.Getenv(name)
		if !ok || v == "" {
			continue
		}
		if len(v) > 2 && v[:2] == "C." {
			_ = syscall.Setenv(name, "C")
		}
		return // the first set variable is the one that counts
	}
}
