package ui

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/beekeeper-hive/beekeeper/hive"
	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/models"
)

// The spawn dialog once offered a "Register with the Queen" checkbox that did nothing:
// while a Queen is set every live worker is registered anyway. It must not promise an
// opt-out it cannot keep, and its request asks for the immediate registration.
func TestSpawnDialogOffersNoQueenOptOut(t *testing.T) {
	tu := newTestUI(t)
	tu.onUI(func() {
		tu.openSpawnDialog("")
		f := tu.spawn
		var checks []string
		var walk func(o fyne.CanvasObject)
		walk = func(o fyne.CanvasObject) {
			switch w := o.(type) {
			case *widget.Check:
				checks = append(checks, w.Text)
			case *fyne.Container:
				for _, c := range w.Objects {
					walk(c)
				}
			case fyne.Widget:
				for _, c := range test.WidgetRenderer(w).Objects() {
					walk(c)
				}
			}
		}
		top := tu.win.Canvas().Overlays().Top()
		if top == nil {
			t.Fatal("spawn dialog not shown")
		}
		walk(top)
		if len(checks) != 0 {
			t.Errorf("spawn dialog has checkboxes %q; none of them can opt a worker out of the Queen", checks)
		}
		f.modelSel.SetText(testenv.Model(t))
		req, err := f.request()
		if err != nil {
			t.Fatal(err)
		}
		if !req.RegisterWithQueen {
			t.Error("spawn request does not register with the Queen at once")
		}
		f.close()
	})
}

// With a model in the models folder and none used yet, the spawn dialog opens with that
// model filled in, so spawning it is Ctrl+N then Enter.
func TestSpawnDialogPrefillsTheModelsFolder(t *testing.T) {
	tu := newTestUI(t)
	folder := t.TempDir()
	model := folder + "/stories260K.gguf"
	if err := copyFile(testenv.Model(t), model); err != nil {
		t.Fatal(err)
	}
	s := tu.core.Settings()
	s.ModelsFolder, s.RecentModels = folder, nil
	if err := tu.core.SaveSettings(s); err != nil {
		t.Fatal(err)
	}
	tu.onUI(func() {
		tu.openSpawnDialog("")
		if got := tu.spawn.modelSel.Text; got != model {
			t.Fatalf("model field %q, want the models folder's %q", got, model)
		}
	})
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

// withDevices makes the spawn dialogs of tu see devs, as `beekeeper devices --json`
// would report them, instead of probing the binary.
func withDevices(tu *testUI, devs ...models.Device) {
	sh := &spawnShared{probed: make(chan struct{}), devs: devs}
	close(sh.probed)
	tu.onUI(func() { tu.spawn = &spawnForm{shared: sh} })
}

// estimateText waits for the dialog's memory line to contain want, and returns it.
func (tu *testUI) estimateText(t *testing.T, want string) string {
	t.Helper()
	var text string
	deadline := time.Now().Add(10 * time.Second)
	for {
		tu.onUI(func() { text = tu.spawn.estimate.Text })
		if strings.Contains(text, want) {
			return text
		}
		if time.Now().After(deadline) {
			t.Fatalf("the estimate reads %q, want %q in it", text, want)
		}
		time.Sleep(10 * time.Millisecond) // poll interval, not synchronisation
	}
}

func TestSpawnDialogEstimatesForTheChosenDevice(t *testing.T) {
	tu := newTestUI(t)
	model := testenv.Model(t)
	withDevices(tu,
		models.Device{Name: "Vulkan1", Description: "Full GPU", Type: "igpu", Backend: "Vulkan", FreeBytes: 100 << 20, TotalBytes: 2 << 30},
		models.Device{Name: "Vulkan0", Description: "Big GPU", Type: "gpu", Backend: "Vulkan", FreeBytes: 8 << 30, TotalBytes: 12 << 30},
		models.Device{Name: "CPU", Description: "A CPU", Type: "cpu", Backend: "CPU", FreeBytes: 16 << 30, TotalBytes: 32 << 30},
	)
	tu.onUI(func() {
		tu.openSpawnDialog(model)
		f := tu.spawn
		if got := f.device.Options; len(got) != 3 || got[0] != "CPU only · 16 GiB RAM free" || got[2] != "Vulkan0 · Big GPU · 8 GiB free" {
			t.Fatalf("device choices %q", got)
		}
		// The GPU with the most free memory, as the worker's auto picks it.
		if f.device.SelectedIndex() != 2 || f.devNote.Visible() {
			t.Fatalf("chose %d, want the 8 GiB GPU (2), and nothing noted (%q)", f.device.SelectedIndex(), f.devNote.Text)
		}
	})
	// stories260K: 5 blocks + output, trained for 2048 tokens.
	text := tu.estimateText(t, "on Vulkan0 (all 6 layers) at 2048 ctx — fits")
	t.Logf("GPU, auto: %s", text)
	req := tu.request(t)
	if req.GPULayers != "" {
		t.Fatalf("GPU layers left empty sends %q, want the worker's default (no flag)", req.GPULayers)
	}

	tu.onUI(func() { tu.spawn.ctxSize.SetText("512") })
	tu.estimateText(t, "at 512 ctx")

	tu.onUI(func() { tu.spawn.layers.SetText("3") })
	t.Logf("GPU, 3 layers: %s", tu.estimateText(t, "(3 of 6 layers) at 512 ctx — fits"))
	if req := tu.request(t); req.GPULayers != "3" {
		t.Fatalf("GPU layers 3 sends %q", req.GPULayers)
	}
	tu.onUI(func() { tu.spawn.layers.SetText("all") })
	tu.estimateText(t, "(all 6 layers) at 512 ctx — fits")
	if req := tu.request(t); req.GPULayers != "all" {
		t.Fatalf("GPU layers all sends %q", req.GPULayers)
	}
	tu.onUI(func() { tu.spawn.layers.SetText("Auto") })
	if req := tu.request(t); req.GPULayers != "auto" {
		t.Fatalf("GPU layers Auto sends %q", req.GPULayers)
	}

	// A GPU with too little free memory: auto keeps every layer on the CPU.
	tu.onUI(func() { tu.spawn.device.SetSelectedIndex(1) })
	text = tu.estimateText(t, "does not fit in 100 MiB free on Vulkan1: 0 of 6 layers")
	t.Logf("full GPU, auto: %s", text)
	tu.onUI(func() {
		if tu.spawn.estimate.Importance != widget.WarningImportance {
			t.Error("a model that does not fit is not shown as a warning")
		}
	})

	// CPU only, with GPUs there: the worker is told 0 layers, and the field is off.
	tu.onUI(func() { tu.spawn.device.SetSelectedIndex(0) })
	t.Logf("CPU only: %s", tu.estimateText(t, "RAM on the CPU at 512 ctx — fits"))
	tu.onUI(func() {
		if !tu.spawn.layers.Disabled() {
			t.Error("GPU layers editable with CPU only chosen")
		}
	})
	if req := tu.request(t); req.GPULayers != "0" {
		t.Fatalf("CPU only sends %q, want 0", req.GPULayers)
	}

	tu.onUI(func() {
		tu.spawn.device.SetSelectedIndex(2)
		tu.spawn.layers.SetText("lots")
		_, err := tu.spawn.request()
		var fe *formError
		if !errors.As(err, &fe) || fe.field != "GPU layers" {
			t.Errorf("GPU layers \"lots\": %v, want a formError on GPU layers", err)
		}
		tu.spawn.close()
	})
}

// Until `beekeeper devices --json` answers, the dialog says so, offers CPU only and
// sends no --gpu-layers: a worker without the flag would refuse it.
func TestSpawnDialogWithUnknownDevicesSendsNoGPULayers(t *testing.T) {
	model := testenv.Model(t)
	tu := newTestUI(t)
	sh := &spawnShared{probed: make(chan struct{}), probeErr: errors.New("no llama.cpp runtime")}
	close(sh.probed)
	tu.onUI(func() { tu.spawn = &spawnForm{shared: sh} })
	tu.onUI(func() { tu.openSpawnDialog(model) })
	tu.waitFor(t, "the devices noted unknown", 10*time.Second, func() bool {
		return tu.spawn.devNote.Visible() && strings.HasPrefix(tu.spawn.devNote.Text, "devices: unknown (")
	})
	t.Logf("unknown devices: %s", tu.estimateText(t, "RAM on the CPU at 2048 ctx"))
	if req := tu.request(t); req.GPULayers != "" {
		t.Fatalf("unknown devices send GPU layers %q", req.GPULayers)
	}
	tu.onUI(func() { tu.spawn.layers.SetText("4") })
	tu.estimateText(t, "on the GPU (4 of 6 layers)")
	if req := tu.request(t); req.GPULayers != "4" {
		t.Fatalf("GPU layers 4 sends %q", req.GPULayers)
	}
	tu.onUI(func() { tu.spawn.close() })
}

// A file that is no model gets its reason in the memory line, not a hang or a crash.
func TestSpawnDialogEstimateOfABadFile(t *testing.T) {
	tu := newTestUI(t)
	bad := t.TempDir() + "/notes.gguf"
	if err := os.WriteFile(bad, []byte("not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	tu.onUI(func() { tu.openSpawnDialog(bad) })
	t.Logf("bad file: %s", tu.estimateText(t, "not a GGUF model file"))
	tu.onUI(func() { tu.spawn.close() })
}

func (tu *testUI) request(t *testing.T) hive.SpawnRequest {
	t.Helper()
	var req hive.SpawnRequest
	var err error
	tu.onUI(func() { req, err = tu.spawn.request() })
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// Auto on a GPU that holds part of the model: the line says how much of it goes there.
func TestEstimateLineForAPartialOffload(t *testing.T) {
	model := testenv.Model(t)
	var cache models.EstimateCache
	three, err := cache.Estimate(model, models.EstimateOptions{CtxSize: 512, GPULayers: 3})
	if err != nil {
		t.Fatal(err)
	}
	free := (three.VRAMBytes + 512<<20) * 20 / 19 // DeviceBudget(free) ≈ three layers
	for models.DeviceBudget(free) < three.VRAMBytes {
		free++
	}
	gpu := models.Device{Name: "CUDA0", Type: "gpu", FreeBytes: free}
	text, fits := estimateQuery{path: model, ctx: 512, gpu: &gpu}.run(&cache)
	t.Log(text)
	if fits || !strings.HasPrefix(text, "about ") || !strings.Contains(text, "on CUDA0 at 512 ctx — does not fit in") ||
		!strings.HasSuffix(text, "free: 3 of 6 layers") {
		t.Fatalf("partial offload reads %q (fits %v)", text, fits)
	}
}

// A runtime without a GPU: nothing to offload to, so no field to fill and no flag sent.
func TestSpawnDialogOnACPUOnlyRuntime(t *testing.T) {
	tu := newTestUI(t)
	withDevices(tu, models.Device{Name: "CPU", Type: "cpu", Backend: "CPU", FreeBytes: 1 << 20, TotalBytes: 8 << 30})
	tu.onUI(func() {
		tu.openSpawnDialog(testenv.Model(t))
		f := tu.spawn
		if len(f.device.Options) != 1 || !f.layers.Disabled() || f.devNote.Text != "no GPU in this llama.cpp runtime: layers run on the CPU" {
			t.Fatalf("choices %q, layers disabled %v, note %q", f.device.Options, f.layers.Disabled(), f.devNote.Text)
		}
		f.layers.SetText("5")
	})
	// 1 MiB of RAM free: the model does not fit, and the line says so.
	t.Log(tu.estimateText(t, "RAM on the CPU at 2048 ctx — more than the 1 MiB of RAM free"))
	if req := tu.request(t); req.GPULayers != "" {
		t.Fatalf("a CPU-only runtime sends GPU layers %q", req.GPULayers)
	}
	tu.onUI(func() { tu.spawn.close() })
}
