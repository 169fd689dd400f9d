// seqtrace-gooffsets: reads a Go binary and prints, as one JSON line, what the agent's eBPF
// programs need to follow its goroutines: where the current g lives in TLS, where goid is in
// runtime.g, the chain persistConn.conn -> *net.TCPConn -> netFD -> poll.FD.Sysfd, and the
// file offsets of the functions it attaches uprobes to. Everything comes from the binary itself
// (build info, ELF symbols and DWARF), nothing is hard-coded per Go version. A binary it cannot
// read prints {"ok":false,"reason":...} and exits 0: the agent then traces it by thread.
//
//	seqtrace-gooffsets /path/to/binary
package main

import (
	"bytes"
	"debug/buildinfo"
	"debug/dwarf"
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
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

func funcBytes(f *elf.File, s elf.Symbol) ([]byte, bool) {
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && s.Value >= p.Vaddr && s.Value+s.Size <= p.Vaddr+p.Filesz {
			b := make([]byte, s.Size)
			if _, err := p.ReadAt(b, int64(s.Value-p.Vaddr)); err != nil {
				return nil, false
			}
			return b, true
		}
	}
	return nil, false
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

func main() {
	r := &result{}
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: seqtrace-gooffsets /path/to/go-binary")
		os.Exit(1)
	}
	path := os.Args[1]
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		fail(r, "no Go build info: %v", err)
	}
	r.GoVersion = bi.GoVersion
	f, err := elf.Open(path)
	if err != nil {
		fail(r, "not a readable ELF file: %v", err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		fail(r, "built for %s, only x86_64 is supported", f.Machine)
	}
	if runtime.GOARCH != "amd64" {
		fail(r, "this tool runs on %s, only amd64 is supported", runtime.GOARCH)
	}
	syms, err := f.Symbols()
	if err != nil {
		fail(r, "no symbol table (stripped with -s?): %v", err)
	}
	d, err := f.DWARF()
	if err != nil {
		fail(r, "no DWARF (built with -ldflags=-w or stripped?): %v", err)
	}
	if r.GoidOffset, err = member(d, "runtime.g", "goid"); err != nil {
		fail(r, "%v", err)
	}
	if r.GM, err = member(d, "runtime.g", "m"); err != nil {
		fail(r, "%v", err)
	}
	if r.MCurg, err = member(d, "runtime.m", "curg"); err != nil {
		fail(r, "%v", err)
	}

	// Where g is. A binary linked by the system linker (cgo) has a TLS segment: g is
	// runtime.tlsg's offset in it, and on x86_64 (TLS variant II) the executable's block ends at
	// the thread pointer (fsbase). Without one (pure Go, internal linker) the runtime sets
	// fsbase itself (runtime.settls) so that g is at -8(FS).
	bySym := map[string]elf.Symbol{}
	for _, s := range syms {
		bySym[s.Name] = s
	}
	r.TLSOffset = -8
	for _, p := range f.Progs {
		if p.Type != elf.PT_TLS {
			continue
		}
		align := p.Align
		if align == 0 {
			align = 1
		}
		block := int64((p.Memsz + align - 1) / align * align)
		r.TLSOffset = int64(bySym["runtime.tlsg"].Value) - block
	}

	np, ok := bySym["runtime.newproc1"]
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
	for _, o := range rets(code) {
		r.Newproc1Ret = append(r.Newproc1Ret, r.Newproc1+o)
	}
	if len(r.Newproc1Ret) == 0 {
		fail(r, "no recognisable return in runtime.newproc1 (Go %s)", bi.GoVersion)
	}

	if ex, ok := bySym["runtime.execute"]; ok {
		r.Execute, _ = fileOffset(f, ex.Value)
	}

	r.NewprocNop5 = nop5BeforeCall(f, bySym["runtime.newproc.func1"], bySym["runtime.runqput"])

	// The HTTP client, when linked in; without it the binary still gets goroutine ids.
	if rt, ok := bySym["net/http.(*persistConn).roundTrip"]; ok {
		itab, ok2 := bySym["go.itab.*net.TCPConn,net.Conn"]
		var e1, e2, e3, e4 error
		r.PconnConn, e1 = member(d, "net/http.persistConn", "conn")
		r.TCPConnFD, e2 = member(d, "net.TCPConn", "conn", "fd")
		var pfd, sysfd int64
		pfd, e3 = member(d, "net.netFD", "pfd")
		sysfd, e4 = member(d, "internal/poll.FD", "Sysfd")
		r.NetFDSysfd = pfd + sysfd
		off, ok3 := fileOffset(f, rt.Value)
		if ok2 && ok3 && e1 == nil && e2 == nil && e3 == nil && e4 == nil {
			r.RoundTrip = off
			r.TCPConnItab = itab.Value
		}
	}
	r.OK = true
	out(r)
}
