// Struct field offsets and itabs from the runtime type descriptors that every Go binary
// carries, for binaries without DWARF or symbols (built with -ldflags="-s -w", or stripped as
// distributions ship them). The runtime allocates runtime.g, runtime.m, net.netFD and
// net/http.persistConn with new(), so their descriptors (the reflect layout: name, fields with
// names and offsets) are in the binary whatever the Go version; only where the descriptors sit
// is found through the module data, whose layout this reads for Go 1.17 and later.
package main

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"strings"
)

const (
	kindPtr    = 22
	kindStruct = 25
	kindMask   = 0x1f
	// tflagExtraStar: the name is stored with a leading '*' (that of the pointer type).
	tflagExtraStar = 2
	// abi.Type (runtime._type): size, ptrdata uintptr; hash uint32; tflag, align, fieldAlign,
	// kind uint8; equal, gcdata pointers; str nameOff int32; ptrToThis typeOff int32. The
	// same from Go 1.14 to today (1.21 moved it to internal/abi unchanged).
	typeHash  = 16
	typeTflag = 20
	typeKind  = 23
	typeStr   = 40
	typeSize  = 48
	// structtype: the type, pkgPath name (a pointer), fields []structfield.
	structPkgPath = typeSize
	structFields  = typeSize + 8
	// structfield: name (a pointer), typ *_type, offset uintptr (Go ≤ 1.18: offset<<1 | embedded).
	fieldSize = 24
)

type goTypes struct {
	f              *elf.File
	types, etypes  uint64
	region         []byte // [types, etypes)
	shiftedOffsets bool   // Go ≤ 1.18
}

// goSection is a section the Go linker names `name`, or `.data.rel.ro` + name in a
// position-independent binary (whose file holds the link-time addresses, relocated at load).
func goSection(f *elf.File, name string) *elf.Section {
	if s := f.Section(name); s != nil {
		return s
	}
	return f.Section(".data.rel.ro" + name)
}

// readTypes finds the module data (its first word is the address of the pclntab) in the
// binary's writable segments and from it the range of the type descriptors.
func readTypes(f *elf.File, pclntab uint64, minor int) (*goTypes, error) {
	// The module data's types/etypes follow pcHeader, six slices, findfunctab, minpc, maxpc,
	// text, etext and the noptrdata, data, bss, noptrbss ranges (Go 1.16–1.19), and from Go
	// 1.20 the covctrs range; then end, gcdata, gcbss.
	at := uint64(280)
	if minor >= 20 {
		at = 296
	}
	var want [8]byte
	binary.LittleEndian.PutUint64(want[:], pclntab)
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD || p.Flags&elf.PF_W == 0 {
			continue
		}
		data := make([]byte, p.Filesz)
		if _, err := p.ReadAt(data, 0); err != nil {
			continue
		}
		for i := 0; i+int(at)+16 <= len(data); i += 8 {
			if string(data[i:i+8]) != string(want[:]) {
				continue
			}
			types := binary.LittleEndian.Uint64(data[i+int(at):])
			etypes := binary.LittleEndian.Uint64(data[i+int(at)+8:])
			if types == 0 || etypes <= types || etypes-types > 1<<28 {
				continue
			}
			region, ok := segmentBytes(f, types, etypes-types)
			if !ok {
				continue
			}
			return &goTypes{f: f, types: types, etypes: etypes, region: region, shiftedOffsets: minor <= 18}, nil
		}
	}
	return nil, fmt.Errorf("no module data pointing at the pclntab (%#x)", pclntab)
}

func (t *goTypes) in(addr, n uint64) bool { return addr >= t.types && addr+n <= t.etypes }

// name reads a name (flags byte, varint length, bytes: Go 1.17+) at addr.
func (t *goTypes) name(addr uint64) (string, bool) {
	if !t.in(addr, 2) {
		return "", false
	}
	b := t.region[addr-t.types:]
	n, w := binary.Uvarint(b[1:])
	if w <= 0 || uint64(len(b)) < 1+uint64(w)+n {
		return "", false
	}
	return string(b[1+w : 1+uint64(w)+n]), true
}

func (t *goTypes) u64(addr uint64) uint64 {
	return binary.LittleEndian.Uint64(t.region[addr-t.types:])
}

// typeName is the name of the type descriptor at addr ("runtime.g", "*net.TCPConn").
func (t *goTypes) typeName(addr uint64) (string, bool) {
	if !t.in(addr, typeSize) {
		return "", false
	}
	b := t.region[addr-t.types:]
	s, ok := t.name(t.types + uint64(int64(int32(binary.LittleEndian.Uint32(b[typeStr:])))))
	if !ok {
		return "", false
	}
	if b[typeTflag]&tflagExtraStar != 0 {
		s = strings.TrimPrefix(s, "*")
	}
	return s, true
}

// findStruct finds the descriptor of struct type full ("net/http.persistConn"): named by its
// package's last element ("http.persistConn") and checked against the package path its
// unexported fields are in.
func (t *goTypes) findStruct(full string) (uint64, error) {
	slash := strings.LastIndex(full, "/")
	pkg := full[:strings.LastIndex(full, ".")]
	short := full[slash+1:]
	for off := uint64(0); off+structFields+16 <= uint64(len(t.region)); off += 8 {
		b := t.region[off:]
		if b[typeKind]&kindMask != kindStruct {
			continue
		}
		addr := t.types + off
		if n, ok := t.typeName(addr); !ok || n != short {
			continue
		}
		if p, ok := t.name(t.u64(addr + structPkgPath)); ok && p != pkg {
			continue
		}
		return addr, nil
	}
	return 0, fmt.Errorf("no type descriptor for %s", full)
}

// member is the byte offset of a field path in struct type typ, as DWARF's member() gives it.
func (t *goTypes) member(typ string, path ...string) (int64, error) {
	addr, err := t.findStruct(typ)
	if err != nil {
		return 0, err
	}
	var total int64
	for i, want := range path {
		fields, n := t.u64(addr+structFields), t.u64(addr+structFields+8)
		if !t.in(fields, n*fieldSize) {
			return 0, fmt.Errorf("type descriptor of %s: fields out of range", typ)
		}
		found := false
		for k := uint64(0); k < n; k++ {
			fa := fields + k*fieldSize
			if name, ok := t.name(t.u64(fa)); !ok || name != want {
				continue
			}
			off := t.u64(fa + 16)
			if t.shiftedOffsets {
				off >>= 1
			}
			total += int64(off)
			addr = t.u64(fa + 8)
			found = true
			break
		}
		if !found {
			return 0, fmt.Errorf("type descriptor of %s has no field %s", typ, strings.Join(path[:i+1], "."))
		}
		if i+1 < len(path) && (!t.in(addr, typeSize) || t.region[addr-t.types+typeKind]&kindMask != kindStruct) {
			return 0, fmt.Errorf("%s.%s is not a struct", typ, strings.Join(path[:i+1], "."))
		}
	}
	return total, nil
}

// itab finds the address of the itab for concrete type conc implementing interface iface
// ("*net.TCPConn", "net.Conn") among the binary's itabs (.itablink: a pointer to each).
func (t *goTypes) itab(conc, iface string) (uint64, error) {
	sec := goSection(t.f, ".itablink")
	if sec == nil {
		return 0, fmt.Errorf("no .itablink section")
	}
	links, err := sec.Data()
	if err != nil {
		return 0, err
	}
	for i := 0; i+8 <= len(links); i += 8 {
		it := binary.LittleEndian.Uint64(links[i:])
		head, ok := segmentBytes(t.f, it, 24)
		if !ok {
			continue
		}
		inter, typ := binary.LittleEndian.Uint64(head), binary.LittleEndian.Uint64(head[8:])
		if !t.in(typ, typeSize) || t.region[typ-t.types+typeKind]&kindMask != kindPtr {
			continue
		}
		if n, ok := t.typeName(typ); !ok || n != conc {
			continue
		}
		if n, ok := t.typeName(inter); !ok || n != iface {
			continue
		}
		// The itab caches its type's hash: one more check that this is what it seems.
		if binary.LittleEndian.Uint32(head[16:]) != binary.LittleEndian.Uint32(t.region[typ-t.types+typeHash:]) {
			continue
		}
		return it, nil
	}
	return 0, fmt.Errorf("no itab %s,%s", conc, iface)
}
