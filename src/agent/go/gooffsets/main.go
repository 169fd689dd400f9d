// seqtrace-gooffsets: reads a Go binary and prints, as one JSON line, what the agent's eBPF
// programs need to follow its goroutines: where the current g lives in TLS, where goid is in
// runtime.g, the chain persistConn.conn -> *net.TCPConn -> netFD -> poll.FD.Sysfd, and the
// file offsets of the functions it attaches uprobes to. Everything comes from the binary itself
// (build info, ELF symbols and DWARF; without symbols the pclntab, without DWARF the runtime's
// type descriptors: typeinfo.go), nothing is hard-coded per Go version. A binary it cannot
// read prints {"ok":false,"reason":...} and exits 0: the agent then links its calls by
// X-Request-ID only.
//
//	seqtrace-gooffsets /path/to/binary
package main

import (
	"bytes"
	"debug/buildinfo"
	"debug/dwarf"
	"debug/elf"
	"debug/gosym"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

type result struct {
	OK        bool   `json:"ok"`
	Reason    string `json:"reason,omitempty"`
	GoVersion string `json:"goVersion,omitempty"`
	// g = *(fsbase + TLSOffset); goid = *(g + GoidOffset)
	TLSOffset  int64 `json:"tlsOffset"`
	GoidOffset int64 `json:"goidOffset"`
	// runtime.newproc1(fn *funcval, callergp *g, callerpc uintptr) *g: the file offsets of its
	// RET instructions (RAX = new g; it runs on the system stack, so TLS holds g0 and the parent
	// is g0.m.curg). No uretprobe: it rewrites the return address on the stack, which the Go
	// runtime's tracebacks reject. Newproc1 is the entry, for the checks.
	Newproc1 uint64 `json:"newproc1"`
	// The 5-byte NOP the compiler put right before runtime.newproc.func1's call to runqput(pp,
	// newg, next), when there is one: there RBX already holds the new g (register ABI, second
	// argument) and a uprobe on a NOP5 is optimised by recent kernels (6.18 here) into a call
	// instead of a breakpoint trap, about 9x cheaper. 0: none, the RETs are used.
	NewprocNop5 uint64   `json:"newprocNop5"`
	GM          int64    `json:"gM"`    // g.m (*m)
	MCurg       int64    `json:"mCurg"` // m.curg (*g)
	Newproc1Ret []uint64 `json:"newproc1Ret"`
	// net/http.(*persistConn).roundTrip(pc *persistConn, ...): RAX = pc. 0 when not linked in.
	RoundTrip uint64 `json:"roundTrip"`
	// runtime.execute: only for the benchmark comparing the seed's per-switch probe.
	Execute uint64 `json:"execute"`
	// pc.conn is a net.Conn interface; its itab is TCPConnItab when it holds a *net.TCPConn.
	PconnConn   int64  `json:"pconnConn"`
	TCPConnItab uint64 `json:"tcpConnItab"`
	TCPConnFD   int64  `json:"tcpConnFd"`  // *TCPConn -> conn.fd (*netFD)
	NetFDSysfd  int64  `json:"netFdSysfd"` // netFD -> pfd.Sysfd
	// Where symbols and offsets came from: "symtab"/"pclntab", "dwarf"/"types".
	Symbols string `json:"symbols"`
	Layout  string `json:"layout"`
	// Position-independent: TCPConnItab is where it is linked, the segment at file offset 0 at
	// LoadVaddr; the agent moves it to where that segment is mapped in each process.
	PIE       bool   `json:"pie"`
	LoadVaddr uint64 `json:"loadVaddr"`
}

func fail(r *result, format string, a ...any) {
	r.OK = false
	r.Reason = fmt.Sprintf(format, a...)
	out(r)
	os.Exit(0)
}

func out(r *result) {
	b, _ := json.Marshal(r)
	fmt.Println(string(b))
}

// member finds the byte offset of a field path in a struct type named typ (DWARF).
func member(d *dwarf.Data, typ string, path ...string) (int64, error) {
	var total int64
	cur := typ
	for i, name := range path {
		st, err := structType(d, cur)
		if err != nil {
			return 0, err
		}
		found := false
		for _, f := range st.Field {
			if f.Name == name {
				total += f.ByteOffset
				cur = f.Type.String()
				found = true
				break
			}
		}
		if !found {
			return 0, fmt.Errorf("DWARF type %s has no field %s", cur, path[i])
		}
	}
	return total, nil
}

var structs map[string]*dwarf.StructType

func structType(d *dwarf.Data, name string) (*dwarf.StructType, error) {
	if structs == nil {
		structs = map[string]*dwarf.StructType{}
		r := d.Reader()
		for {
			e, err := r.Next()
			if err != nil || e == nil {
				break
			}
			if e.Tag != dwarf.TagStructType {
				continue
			}
			n, _ := e.Val(dwarf.AttrName).(string)
			if n == "" || structs[n] != nil {
				continue
			}
			switch n {
			case "runtime.g", "runtime.m", "net/http.persistConn", "net.TCPConn", "net.conn", "net.netFD", "internal/poll.FD":
			default:
				continue
			}
			t, err := d.Type(e.Offset)
			if err != nil {
				continue
			}
			if st, ok := t.(*dwarf.StructType); ok {
				structs[n] = st
			}
		}
	}
	if st := structs[name]; st != nil {
		return st, nil
	}
	return nil, fmt.Errorf("DWARF has no struct %s", name)
}

// fileOffset turns a virtual address of .text into an offset in the file (what uprobes take).
func fileOffset(f *elf.File, addr uint64) (uint64, bool) {
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && addr >= p.Vaddr && addr < p.Vaddr+p.Filesz {
			return addr - p.Vaddr + p.Off, true
		}
	}
	return 0, false
}

// funcBytes reads a function's code.
func funcBytes(f *elf.File, s elf.Symbol) ([]byte, bool) {
	return segmentBytes(f, s.Value, s.Size)
}

// segmentBytes reads [addr, addr+n) from the PT_LOAD segment holding it.
func segmentBytes(f *elf.File, addr, n uint64) ([]byte, bool) {
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && addr >= p.Vaddr && addr+n <= p.Vaddr+p.Filesz {
			b := make([]byte, n)
			if _, err := p.ReadAt(b, int64(addr-p.Vaddr)); err != nil {
				return nil, false
			}
			return b, true
		}
	}
	return nil, false
}

// stackCheck: code begins with the stack-bound check Go (1.17+, register ABI) puts at the
// entry of a function with a frame: CMPQ SP, 16(R14), or for a large frame LEAQ -n(SP), R12
// then CMPQ R12, 16(R14). A uprobe goes at a function's entry or at offsets within it; this
// check makes sure that the address the symbols or the pclntab gave is that function's start.
func stackCheck(code []byte) bool {
	has := func(at int, b ...byte) bool { return len(code) >= at+len(b) && bytes.Equal(code[at:at+len(b)], b) }
	return has(0, 0x49, 0x3b, 0x66, 0x10) ||
		(has(0, 0x4c, 0x8d, 0x64, 0x24) && has(5, 0x4d, 0x3b, 0x66, 0x10)) ||
		(has(0, 0x4c, 0x8d, 0xa4, 0x24) && has(8, 0x4d, 0x3b, 0x66, 0x10))
}

// rets finds the RET of each epilogue the Go compiler emits for a function with a frame:
// MOVQ off(SP), BP; ADDQ $size, SP; RET. Matching the whole sequence (10 or 16 bytes), not a
// lone 0xc3, keeps a byte inside another instruction from passing for a RET.
func rets(code []byte) []uint64 {
	var out []uint64
	for i := 0; i < len(code); i++ {
		if code[i] != 0xc3 {
			continue
		}
		short := i >= 9 && bytes.Equal(code[i-9:i-5], []byte{0x48, 0x8b, 0x6c, 0x24}) && bytes.Equal(code[i-4:i-1], []byte{0x48, 0x83, 0xc4})
		long := i >= 15 && bytes.Equal(code[i-15:i-11], []byte{0x48, 0x8b, 0xac, 0x24}) && bytes.Equal(code[i-7:i-4], []byte{0x48, 0x81, 0xc4})
		if short || long {
			out = append(out, uint64(i))
		}
	}
	return out
}

// nop5BeforeCall finds, in fn, a CALL rel32 whose target is callee and which directly follows a
// 5-byte NOP (0f 1f 44 00 00); returns the NOP's file offset, or 0. The call's target is
// computed, not guessed, so a byte pattern inside another instruction cannot pass.
func nop5BeforeCall(f *elf.File, fn, callee elf.Symbol) uint64 {
	if fn.Value == 0 || callee.Value == 0 {
		return 0
	}
	code, ok := funcBytes(f, fn)
	if !ok {
		return 0
	}
	nop5 := []byte{0x0f, 0x1f, 0x44, 0x00, 0x00}
	for i := 5; i+5 <= len(code); i++ {
		if code[i] != 0xe8 || !bytes.Equal(code[i-5:i], nop5) {
			continue
		}
		rel := int32(uint32(code[i+1]) | uint32(code[i+2])<<8 | uint32(code[i+3])<<16 | uint32(code[i+4])<<24)
		if fn.Value+uint64(i)+5+uint64(int64(rel)) == callee.Value {
			off, ok := fileOffset(f, fn.Value+uint64(i-5))
			if ok {
				return off
			}
		}
	}
	return 0
}

// firstLoad is where the segment at file offset 0 is linked: an address as linked, minus
// that, plus where the segment is mapped, is the address at run time.
func firstLoad(f *elf.File) (uint64, bool) {
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Off == 0 {
			return p.Vaddr, true
		}
	}
	return 0, false
}

// goMinor is the minor version of a "go1.N[.x]" string; a development build counts as recent.
func goMinor(v string) int {
	m := strings.TrimPrefix(v, "go1.")
	if i := strings.IndexAny(m, ".-+ "); i >= 0 {
		m = m[:i]
	}
	n, err := strconv.Atoi(m)
	if err != nil || !strings.HasPrefix(v, "go1.") {
		return 1 << 10
	}
	return n
}

// image is what the offsets are read from: functions by the symbol table or the pclntab,
// struct fields by DWARF or the type descriptors.
type image struct {
	f     *elf.File
	syms  map[string]elf.Symbol // nil when stripped
	pcln  *gosym.Table          // when stripped
	d     *dwarf.Data           // nil without DWARF
	types *goTypes              // when without DWARF
}

func (m *image) fn(name string) (elf.Symbol, bool) {
	if m.syms != nil {
		s, ok := m.syms[name]
		return s, ok
	}
	if f := m.pcln.LookupFunc(name); f != nil {
		return elf.Symbol{Name: name, Value: f.Entry, Size: f.End - f.Entry}, true
	}
	return elf.Symbol{}, false
}

func (m *image) member(typ string, path ...string) (int64, error) {
	if m.d != nil {
		return member(m.d, typ, path...)
	}
	return m.types.member(typ, path...)
}

func (m *image) itab(conc, iface string) (uint64, bool) {
	if m.syms != nil {
		s, ok := m.syms["go.itab."+conc+","+iface]
		return s.Value, ok
	}
	a, err := m.types.itab(conc, iface)
	return a, err == nil
}

func open(r *result, path string) *image {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		fail(r, "no Go build info: %v", err)
	}
	r.GoVersion = bi.GoVersion
	f, err := elf.Open(path)
	if err != nil {
		fail(r, "not a readable ELF file: %v", err)
	}
	if f.Machine != elf.EM_X86_64 {
		fail(r, "built for %s, only x86_64 is supported", f.Machine)
	}
	if runtime.GOARCH != "amd64" {
		fail(r, "this tool runs on %s, only amd64 is supported", runtime.GOARCH)
	}
	if goMinor(bi.GoVersion) < 17 {
		fail(r, "%s: Go 1.17 or later is needed (register ABI)", bi.GoVersion)
	}
	m := &image{f: f}
	if syms, err := f.Symbols(); err == nil {
		m.syms = map[string]elf.Symbol{}
		for _, s := range syms {
			m.syms[s.Name] = s
		}
		r.Symbols = "symtab"
	}
	pcln := goSection(f, ".gopclntab")
	if m.syms == nil {
		if pcln == nil {
			fail(r, "no symbol table and no .gopclntab section")
		}
		data, err := pcln.Data()
		if err != nil {
			fail(r, "no symbol table, and the .gopclntab cannot be read: %v", err)
		}
		// The functions' addresses are relative to where Go's code starts: in the pcHeader from
		// Go 1.18 on (magic, 4 bytes, nfunc, nfiles, textStart), not .text's start, which the
		// system linker (cgo) gives to the C start-up code before it.
		if len(data) < 32 || (binary.LittleEndian.Uint32(data) != 0xfffffff0 && binary.LittleEndian.Uint32(data) != 0xfffffff1) {
			fail(r, "no symbol table, and a .gopclntab older than Go 1.18's")
		}
		textStart := binary.LittleEndian.Uint64(data[24:])
		// Go 1.20 changed the magic (0xfffffff1) for a field added to the runtime's _func
		// record after the ones debug/gosym reads (entry, name); the header and the function
		// table are Go 1.18's, which this tool's debug/gosym (Go 1.19) knows.
		if binary.LittleEndian.Uint32(data) == 0xfffffff1 {
			data = append([]byte(nil), data...)
			binary.LittleEndian.PutUint32(data, 0xfffffff0)
		}
		if m.pcln, err = gosym.NewTable(nil, gosym.NewLineTable(data, textStart)); err != nil {
			fail(r, "no symbol table, and the .gopclntab cannot be read: %v", err)
		}
		r.Symbols = "pclntab"
	}
	if d, err := f.DWARF(); err == nil {
		m.d = d
		r.Layout = "dwarf"
	} else {
		if pcln == nil {
			fail(r, "no DWARF and no .gopclntab section")
		}
		if m.types, err = readTypes(f, pcln.Addr, goMinor(bi.GoVersion)); err != nil {
			fail(r, "no DWARF, and no type descriptors: %v", err)
		}
		r.Layout = "types"
	}
	return m
}

// tlsOffset is where g is from fsbase. A binary linked by the system linker (cgo) has a TLS
// segment: g is runtime.tlsg's offset in it, and on x86_64 (TLS variant II) the executable's
// block ends at the thread pointer (fsbase). Without one (pure Go, internal linker) the
// runtime sets fsbase itself (runtime.settls) so that g is at -8(FS).
func (m *image) tlsOffset(r *result) int64 {
	for _, p := range m.f.Progs {
		if p.Type != elf.PT_TLS {
			continue
		}
		align := p.Align
		if align == 0 {
			align = 1
		}
		block := int64((p.Memsz + align - 1) / align * align)
		if m.syms != nil {
			return int64(m.syms["runtime.tlsg"].Value) - block
		}
		// Stripped: when the segment holds nothing but runtime.tlsg, tlsg is at its start.
		if p.Memsz > 8 {
			fail(r, "no symbol table, and a TLS segment of %d bytes: where g is cannot be told", p.Memsz)
		}
		return -block
	}
	return -8
}

func main() {
	r := &result{}
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: seqtrace-gooffsets /path/to/go-binary")
		os.Exit(1)
	}
	m := open(r, os.Args[1])
	defer m.f.Close()
	f := m.f
	var err error
	if r.GoidOffset, err = m.member("runtime.g", "goid"); err != nil {
		fail(r, "%v", err)
	}
	if r.GM, err = m.member("runtime.g", "m"); err != nil {
		fail(r, "%v", err)
	}
	if r.MCurg, err = m.member("runtime.m", "curg"); err != nil {
		fail(r, "%v", err)
	}
	r.TLSOffset = m.tlsOffset(r)

	np, ok := m.fn("runtime.newproc1")
	if !ok {
		fail(r, "no symbol runtime.newproc1")
	}
	if r.Newproc1, ok = fileOffset(f, np.Value); !ok {
		fail(r, "runtime.newproc1 is not in an executable segment")
	}
	code, ok := funcBytes(f, np)
	if !ok {
		fail(r, "cannot read the code of runtime.newproc1")
	}
	if !stackCheck(code) {
		fail(r, "runtime.newproc1 at %#x does not begin with Go's stack check (Go %s)", np.Value, r.GoVersion)
	}
	for _, o := range rets(code) {
		r.Newproc1Ret = append(r.Newproc1Ret, r.Newproc1+o)
	}
	if len(r.Newproc1Ret) == 0 {
		fail(r, "no recognisable return in runtime.newproc1 (Go %s)", r.GoVersion)
	}

	if ex, ok := m.fn("runtime.execute"); ok {
		r.Execute, _ = fileOffset(f, ex.Value)
	}

	fn1, _ := m.fn("runtime.newproc.func1")
	runqput, _ := m.fn("runtime.runqput")
	r.NewprocNop5 = nop5BeforeCall(f, fn1, runqput)

	// The HTTP client, when linked in; without it the binary still gets goroutine ids.
	if rt, ok := m.fn("net/http.(*persistConn).roundTrip"); ok {
		itab, ok2 := m.itab("*net.TCPConn", "net.Conn")
		var e1, e2, e3, e4 error
		r.PconnConn, e1 = m.member("net/http.persistConn", "conn")
		r.TCPConnFD, e2 = m.member("net.TCPConn", "conn", "fd")
		var pfd, sysfd int64
		pfd, e3 = m.member("net.netFD", "pfd")
		sysfd, e4 = m.member("internal/poll.FD", "Sysfd")
		r.NetFDSysfd = pfd + sysfd
		off, ok3 := fileOffset(f, rt.Value)
		if code, ok := funcBytes(f, rt); !ok || !stackCheck(code) {
			ok3 = false
		}
		if r.PIE = f.Type == elf.ET_DYN; r.PIE {
			var found bool
			if r.LoadVaddr, found = firstLoad(f); !found {
				ok3 = false
			}
		}
		if ok2 && ok3 && e1 == nil && e2 == nil && e3 == nil && e4 == nil {
			r.RoundTrip = off
			r.TCPConnItab = itab
		}
	}
	r.OK = true
	out(r)
}
