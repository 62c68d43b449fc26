package repository_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/warren-farm/warren/pkg/repository"
)

// A repository with a seed model and a config with two mistakes: Scan names the
// file and the key of each, and the worker exits with status 2.
func Example() {
	dir, _ := os.MkdirTemp("", "models")
	defer os.RemoveAll(dir)
	write := func(path, content string) {
		_ = os.MkdirAll(filepath.Dir(filepath.Join(dir, path)), 0o755)
		_ = os.WriteFile(filepath.Join(dir, path), []byte(content), 0o644)
	}
	write("seed/config.yaml", "backend: seed\nlatency: 5ms\n")

	ms, err := repository.Scan(dir, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(repository.Summary(ms))
	loaded, err := repository.Load(context.Background(), ms, repository.Backends{
		repository.BackendSeed: repository.SeedBackend,
		repository.BackendHTTP: repository.HTTPBackend,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer repository.Close(loaded)
	fmt.Println(loaded[0].Metadata.Name, loaded[0].Metadata.Versions, loaded[0].Metadata.Platform)

	write("lab/config.yaml", "backend: http\nprotocol: seed\nurl: http://svc-b:8001/predict\nmaxconns: 8\nseed: 1\n")
	_, err = repository.Scan(dir, nil)
	for _, p := range repository.Problems(err) {
		var e *repository.Error
		errors.As(p, &e)
		fmt.Printf("%s: %s: %s\n", filepath.Base(filepath.Dir(e.Path))+"/"+filepath.Base(e.Path), e.Key, e.Msg)
	}
	fmt.Println("exit 2:", errors.Is(err, repository.ErrInvalid))
	// Output:
	// 1 model, 1 version: seed v1 (seed latency 5ms)
	// seed [1] warren_seed
	// lab/config.yaml: maxconns: unknown key (did you mean max_conns?)
	// lab/config.yaml: seed: only for backend seed (this model's backend is http)
	// exit 2: true
}
