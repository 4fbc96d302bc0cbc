// Package wintest proves the Windows build on Linux, under Wine: its test cross-compiles
// beekeeper.exe, installs the win-x64 llama.cpp runtime, and runs a worker that
// generates text, spawn/ps/stop on one registry, and the spawner's Windows tests (Job
// Objects, process identity, exit watching). See docs/platforms.md.
package wintest
