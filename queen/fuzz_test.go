package queen

import (
	"errors"
	"net/http"
	"testing"

	"github.com/beekeeper-hive/beekeeper/wire"
)

// FuzzRegister feeds the registration decoder and validator arbitrary bodies: it must
// never panic, must reject with a 4xx APIError, and whatever it accepts must satisfy
// every rule of docs/protocol.md §2.
func FuzzRegister(f *testing.F) {
	f.Add([]byte(`{"worker_id":"worker-llm-8080","hostname":"127.0.0.1","port":8080,"worker_type":"llm","model":"stories260K","spawned_by":"gui"}`))
	f.Add([]byte(`{"worker_id":"w","hostname":"::1","port":65535,"worker_type":"llm","model":"m"}`))
	f.Add([]byte(`{"worker_id":"w","hostname":"h","port":65536,"worker_type":"llm","model":"m"}`))
	f.Add([]byte(`{"worker_id":"w","hostname":"h","port":1.5,"worker_type":"llm","model":"m"}`))
	f.Add([]byte(`{"worker_id":"a/b","hostname":"h","port":1,"worker_type":"llm","model":"m"}`))
	f.Add([]byte(`{"worker_id":"w","hostname":"h","port":1,"worker_type":"llm","model":"m","extra":1}`))
	f.Add([]byte(`{"worker_id":"w","worker_id":"a b","hostname":"h","port":1,"worker_type":"llm","model":"m"}`))
	f.Add([]byte(`{"worker_id":"w"} trailing`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"worker_id":"\u00e9","hostname":"h","port":1,"worker_type":"llm","model":"m"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeRegister(body)
		if err != nil {
			var apiErr *wire.APIError
			if !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest || apiErr.Detail.Message == "" {
				t.Fatalf("rejection is not a 400 with a message: %#v", err)
			}
			return
		}
		if !wire.ValidWorkerID(req.WorkerID) || req.Port < 1 || req.Port > 65535 ||
			req.Hostname == "" || req.WorkerType == "" || req.Model == "" {
			t.Fatalf("accepted an invalid registration: %+v", req)
		}
	})
}
