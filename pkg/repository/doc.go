// Package repository reads warren's model repository: a directory with one
// subdirectory per model, each holding a config.yaml and, optionally, numeric
// version directories (the Triton/KServe layout).
//
//	models/
//	  digits/config.yaml   # backend: onnx
//	  digits/1/model.onnx
//	  digits/testdata/…    # not numeric: ignored
//	  seed/config.yaml     # backend: seed (no version directory: version 1)
//	  lab/config.yaml      # backend: http
//
// [Scan] (or [Read]) validates every selected model's config.yaml strictly and
// resolves its version policy, returning one [Model] per served version. [Load]
// turns them into predictors with the [Backends] the worker supplies.
//
// # Errors
//
// Every problem is an [*Error] that names the file and the config key, such as
//
//	models/digits/config.yaml: max_batch_size: must be between 0 and 1024, got -1
//
// and wraps [ErrInvalid] (the worker exits with status 2). Scan reports every
// problem of every model at once, joined with errors.Join; [Problems] splits
// them for logging. The user-facing description of the format is
// docs/model-repository.md.
package repository
