package config

import (
	"errors"
	"strconv"
	"strings"
)

// ParseBytes parses a byte count: a plain number or one with a B, KiB, MiB or GiB
// suffix, case-insensitive, spaces ignored: "1048576", "512KiB", "1 MiB". KB, MB and
// GB (and K, M, G) are read as the binary units too: "1 MB" is 1048576.
func ParseBytes(s string) (int64, error) {
	t := strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(s), " ", ""))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSuffix(t, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<63-1)/mult {
		return 0, errors.New("not a byte size (e.g. 1048576, 512KiB, 1MiB)")
	}
	return n * mult, nil
}

// FormatBytes writes n in the largest binary unit that divides it: 1MiB, 512KiB,
// 1000 (ParseBytes reads it back).
func FormatBytes(n int64) string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}
