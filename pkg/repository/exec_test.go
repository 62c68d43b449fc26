package repository

import (
	"path/filepath"
	"testing"
	"time"
)

func TestExecConfig(t *testing.T) {
	writeRepo(t, map[string]string{
		"models/py/config.yaml":  "backend: exec\ncommand: [python3, serve.py, --fast]\nenv: {A: \"1\"}\nversion_policy: {all: true}\n",
		"models/py/1/":           "",
		"models/py/2/":           "",
		"models/one/config.yaml": "backend: exec\ncommand: [./serve]\n",
	})
	ms, err := Scan("models", nil)
	if err != nil {
		t.Fatal(err)
	}
	one := ExecConfig(ms[0])
	if one.Instances != 1 || one.LoadTimeout != 60*time.Second || one.Version != "1" || one.WorkDir != filepath.Join("models", "one") || one.ModelDir != filepath.Join("models", "one") {
		t.Errorf("defaults: %+v", one)
	}
	v2 := ExecConfig(ms[2])
	if v2.Name != "py/2" || v2.ModelName != "py" || v2.WorkDir != filepath.Join("models", "py") || v2.ModelDir != filepath.Join("models", "py", "2") ||
		len(v2.Command) != 3 || v2.Env["A"] != "1" {
		t.Errorf("versioned: %+v", v2)
	}
}
