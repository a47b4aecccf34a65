// Command gen regenerates flsecure.pb.go from flsecure.proto with Go alone:
// github.com/bufbuild/protocompile parses and links the schema (keeping its
// comments as source info) and the protoc-gen-go code generator of
// google.golang.org/protobuf — the version this module requires, which must
// be the one the fl-secure module requires — runs in this process on the
// CodeGeneratorRequest protoc would have sent it. No protoc is needed.
//
// It lives in a module of its own so that the fl-secure module does not
// depend on the compiler. Run it with go generate in protocol/wire.
//
// Usage:
//
//	gen [-check] DIR
//
// reads DIR/flsecure.proto and writes DIR/flsecure.pb.go; with -check it
// writes nothing and fails if the file would change.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/bufbuild/protocompile"
	gengo "google.golang.org/protobuf/cmd/protoc-gen-go/internal_gengo"
	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
)

const (
	source = "flsecure.proto"
	output = "flsecure.pb.go"
	// compilerLine names what parsed the schema in the generated header,
	// where protoc-gen-go would name a protoc version.
	compilerLine = "// \tprotocompile  v0.14.1\n"
	protobufPath = "google.golang.org/protobuf"
)

func main() {
	check := flag.Bool("check", false, "fail if the generated file would change; write nothing")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: gen [-check] DIR\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(flag.Arg(0), *check); err != nil {
		fmt.Fprintf(os.Stderr, "gen: %v\n", err)
		os.Exit(1)
	}
}

func run(dir string, check bool) error {
	if err := sameProtobuf(dir); err != nil {
		return err
	}
	code, err := generate(dir)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, output)
	if check {
		old, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !bytes.Equal(old, code) {
			return fmt.Errorf("%s is not what %s generates; run go generate in %s", path, source, dir)
		}
		return nil
	}
	return os.WriteFile(path, code, 0o644)
}

// generate compiles DIR/flsecure.proto and returns the Go code protoc-gen-go
// writes for it.
func generate(dir string) ([]byte, error) {
	c := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{
			ImportPaths: []string{dir},
		}),
		SourceInfoMode: protocompile.SourceInfoStandard,
	}
	files, err := c.Compile(context.Background(), source)
	if err != nil {
		return nil, err
	}
	if len(files) != 1 {
		return nil, fmt.Errorf("compiled %d files, want 1", len(files))
	}
	fd := protodesc.ToFileDescriptorProto(files[0])
	if fd.GetSourceCodeInfo() == nil {
		return nil, errors.New("the compiled schema has no source info (its comments would be lost)")
	}
	req := &pluginpb.CodeGeneratorRequest{
		FileToGenerate: []string{source},
		Parameter:      ptr("paths=source_relative"),
		ProtoFile:      []*descriptorpb.FileDescriptorProto{fd},
	}
	gen, err := protogen.Options{}.New(req)
	if err != nil {
		return nil, err
	}
	for _, f := range gen.Files {
		if f.Generate {
			gengo.GenerateFile(gen, f)
		}
	}
	gen.SupportedFeatures = gengo.SupportedFeatures
	gen.SupportedEditionsMinimum = gengo.SupportedEditionsMinimum
	gen.SupportedEditionsMaximum = gengo.SupportedEditionsMaximum
	resp := gen.Response()
	if resp.Error != nil {
		return nil, errors.New(resp.GetError())
	}
	if len(resp.File) != 1 || resp.File[0].GetName() != output {
		return nil, fmt.Errorf("protoc-gen-go wrote %d files, want only %s", len(resp.File), output)
	}
	return header(resp.File[0].GetContent())
}

// header replaces the protoc version line of the generated header, which
// without a protoc reads "(unknown)", with the compiler that was used.
func header(code string) ([]byte, error) {
	const unknown = "// \tprotoc        (unknown)\n"
	if strings.Count(code, unknown) != 1 {
		return nil, errors.New("the generated header has no protoc version line to replace")
	}
	return []byte(strings.Replace(code, unknown, compilerLine, 1)), nil
}

// sameProtobuf checks that this program links the google.golang.org/protobuf
// version that the module holding dir requires: the generated code must
// match the runtime it is compiled with.
func sameProtobuf(dir string) error {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return errors.New("no build information: cannot tell which protoc-gen-go this is")
	}
	mine := ""
	for _, d := range bi.Deps {
		if d.Path == protobufPath {
			mine = d.Version
		}
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for d := abs; ; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil {
			want := requiredVersion(string(b), protobufPath)
			if want == "" {
				return fmt.Errorf("%s does not require %s", filepath.Join(d, "go.mod"), protobufPath)
			}
			if want != mine {
				return fmt.Errorf("this generator links %s %s, %s requires %s: update internal/gen/go.mod to match", protobufPath, mine, filepath.Join(d, "go.mod"), want)
			}
			return nil
		}
		if filepath.Dir(d) == d {
			return fmt.Errorf("no go.mod above %s", abs)
		}
	}
}

// requiredVersion finds the version of path in a go.mod's require lines.
func requiredVersion(gomod, path string) string {
	for _, line := range strings.Split(gomod, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "require" {
			f = f[1:]
		}
		if len(f) >= 2 && f[0] == path {
			return f[1]
		}
	}
	return ""
}

func ptr[T any](v T) *T { return &v }
