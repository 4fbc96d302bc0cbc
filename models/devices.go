package models

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// Device is one llama.cpp backend device as `beekeeper devices --json` reports it.
type Device struct {
	Name        string `json:"name"`        // "Vulkan0", "CUDA0", "CPU"
	Description string `json:"description"` // "NVIDIA GeForce RTX 3060"
	Type        string `json:"type"`        // "cpu", "gpu", "igpu" or "accel"
	Backend     string `json:"backend"`     // "Vulkan", "CUDA", "CPU"
	FreeBytes   uint64 `json:"free_bytes"`
	TotalBytes  uint64 `json:"total_bytes"`
}

// Offloads reports whether llama.cpp offloads layers to the device: a GPU, discrete or
// integrated. An "accel" device (BLAS, AMX) works beside the CPU, on host memory.
func (d Device) Offloads() bool { return d.Type == "gpu" || d.Type == "igpu" }

// deviceReport is the whole of `beekeeper devices --json`.
type deviceReport struct {
	Runtime string    `json:"runtime"` // the llama.cpp folder the devices come from
	Backend string    `json:"backend"` // "cpu", "vulkan", "cuda" or "custom"
	Devices *[]Device `json:"devices"` // a pointer, to tell a missing list from an empty one
}

// maxDevicesOutput bounds what ProbeDevices reads: the report is a few hundred bytes.
const maxDevicesOutput = 1 << 20

// ProbeDevices runs exe (a beekeeper binary) as `devices --json` and returns its
// devices. The desktop app asks its own binary so that it never loads llama.cpp's
// libraries itself; llamaLib, when set, names the runtime folder (the app's Settings);
// ctx bounds the run (the caller sets the timeout).
func ProbeDevices(ctx context.Context, exe, llamaLib string) ([]Device, error) {
	args := []string{"devices", "--json"}
	if llamaLib != "" {
		args = append(args, "--llama-lib", llamaLib)
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	var out, errOut limitedBuffer
	out.max, errOut.max = maxDevicesOutput, 4096
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.WaitDelay = 2 * time.Second // a child that keeps the pipes open after the kill
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s devices --json: %w", exe, ctx.Err())
		}
		if msg := lastLine(errOut.String()); msg != "" {
			return nil, fmt.Errorf("%s devices --json: %w: %s", exe, err, msg)
		}
		return nil, fmt.Errorf("%s devices --json: %w", exe, err)
	}
	devs, err := ParseDevices(out.Bytes())
	if err != nil {
		return nil, fmt.Errorf("%s devices --json: %w", exe, err)
	}
	return devs, nil
}

// ParseDevices reads the JSON `beekeeper devices --json` prints:
//
//	{"runtime":"…","backend":"vulkan","devices":[{"name":"Vulkan0","description":"…",
//	 "type":"gpu","backend":"Vulkan","free_bytes":N,"total_bytes":N}]}
//
// Lines before the JSON (a library's chatter on stdout) are skipped.
func ParseDevices(b []byte) ([]Device, error) {
	b = bytes.TrimSpace(b)
	if i := bytes.Index(b, []byte("\n{")); i >= 0 && !bytes.HasPrefix(b, []byte("{")) {
		b = b[i+1:]
	}
	var r deviceReport
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("unreadable device report (%w): update beekeeper", err)
	}
	if r.Devices == nil {
		return nil, errors.New(`the device report has no "devices" list: update beekeeper`)
	}
	for i, d := range *r.Devices {
		if d.Name == "" {
			return nil, fmt.Errorf("device %d of the report has no name", i)
		}
	}
	return *r.Devices, nil
}

// limitedBuffer keeps the first max bytes written and drops the rest, so a child that
// floods its output costs no more than that.
type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}
