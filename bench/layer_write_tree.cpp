// imgbake_bench_layers: writes one directory tree as one OCI layer with layer::write_tree and
// prints how long that took, for bench/layer_export.py. Not a test: it asserts nothing.
//
//   imgbake_bench_layers TREE OUT [gzip|zstd|none]
//
// prints "write_tree_seconds=S bytes=N entries=E digest=sha256:…" and leaves the layer at OUT.
#include <chrono>
#include <exception>
#include <iostream>
#include <string>

#include "imgbake/cancel.h"
#include "imgbake/layer.h"

int main(int argc, char** argv) {
  namespace layer = imgbake::layer;
  if (argc < 3 || argc > 4) {
    std::cerr << "usage: imgbake_bench_layers TREE OUT [gzip|zstd|none]\n";
    return 2;
  }
  layer::Options opts;
  if (argc == 4) {
    auto parsed = layer::parse_compression(argv[3]);
    if (!parsed) {
      std::cerr << "imgbake_bench_layers: unknown compression '" << argv[3] << "' (gzip, zstd or none)\n";
      return 2;
    }
    opts.compression = *parsed;
  }
  try {
    imgbake::CancelToken cancel;
    auto start = std::chrono::steady_clock::now();
    layer::LayerBlob blob = layer::write_tree(argv[1], argv[2], opts, cancel);
    std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    std::cout << "write_tree_seconds=" << took.count() << " bytes=" << blob.size << " entries=" << blob.entries
              << " digest=" << blob.digest << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "imgbake_bench_layers: cannot write " << argv[2] << " from " << argv[1] << ": " << e.what() << "\n";
    return 1;
  }
  return 0;
}
