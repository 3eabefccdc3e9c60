package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Size is a byte count written as 512MiB, 2GiB, 2G (binary units, as QEMU
// and libvirt read them) or a plain number of bytes.
type Size int64

// Binary units.
const (
	KiB Size = 1 << (10 * (iota + 1))
	MiB
	GiB
	TiB
)

var sizeRE = regexp.MustCompile(`^([0-9]+)\s*([KMGT]?)(i?B)?$`)

// ParseSize reads a size such as "2GiB".
func ParseSize(s string) (Size, error) {
	m := sizeRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil || (m[2] == "" && m[3] == "iB") {
		return 0, fmt.Errorf("%q is not a size (write it like 512MiB or 2GiB)", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size: %w", s, err)
	}
	mult := map[string]Size{"": 1, "K": KiB, "M": MiB, "G": GiB, "T": TiB}[m[2]]
	if n > int64(1<<62)/int64(mult) {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return Size(n) * mult, nil
}

// String prints the size in the largest whole binary unit.
func (s Size) String() string {
	for _, u := range []struct {
		n string
		v Size
	}{{"TiB", TiB}, {"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB}} {
		if s >= u.v && s%u.v == 0 {
			return fmt.Sprintf("%d%s", s/u.v, u.n)
		}
	}
	return fmt.Sprintf("%dB", int64(s))
}
