#include "core/data/fashion_mnist.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <memory>
#include <vector>

#include "core/data/data_source.h"
#include "core/base/errors.h"

namespace fedsim {
namespace {

constexpr std::uint32_t kLabelMagic = 0x00000801;  // idx: unsigned bytes, 1 dimension
constexpr std::uint32_t kImageMagic = 0x00000803;  // idx: unsigned bytes, 3 dimensions
constexpr std::uint32_t kSide = 28;
constexpr std::uint32_t kClasses = 10;
constexpr std::int64_t kMaxItems = std::numeric_limits<std::uint32_t>::max();

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};

// One gzip'd idx file, read sequentially; every failure names the file.
class IdxReader {
 public:
  explicit IdxReader(std::string file) : file_(std::move(file)) {
    file_handle_.reset(gzopen(file_.c_str(), "rb"));
    if (!file_handle_)
      fail("cannot open (install the Debian package dataset-fashion-mnist or set data.path)");
  }

  [[noreturn]] void fail(const std::string& what) const { throw InputError(file_ + ": " + what); }

  // Reads exactly `size` bytes; `what` names them in the error message.
  void read(std::uint8_t* out, std::size_t size, const std::string& what) {
    std::size_t done = 0;
    while (done < size) done += read_some(out + done, size - done, what, done, size);
  }

  // Like read(), but `size` comes from the file's header and is not trusted:
  // beyond what the real files need (47 MB), the buffer grows with the data
  // actually read (at most doubling), so a corrupt item count fails as
  // truncated instead of exhausting memory.
  std::vector<std::uint8_t> read_claimed(std::size_t size, const std::string& what) {
    constexpr std::size_t kFirstChunk = std::size_t{1} << 20;
    constexpr std::size_t kTrustedBytes = std::size_t{1} << 26;
    std::vector<std::uint8_t> out;
    out.reserve(std::min(size, kTrustedBytes));
    while (out.size() < size) {
      const std::size_t done = out.size();
      out.resize(done + std::min(size - done, std::max(kFirstChunk, done)));
      std::size_t filled = done;
      while (filled < out.size()) filled += read_some(out.data() + filled, out.size() - filled, what, filled, size);
    }
    return out;
  }

  std::uint32_t read_u32(const std::string& what) {
    std::array<std::uint8_t, 4> b{};
    read(b.data(), b.size(), what);
    return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) | b[3];
  }

  // After the whole payload: nothing may follow, and reaching the end checks
  // the gzip CRC (a stream cut inside its trailer is truncated, not complete).
  void expect_end() {
    std::uint8_t extra = 0;
    const int got = gzread(file_handle_.get(), &extra, 1);
    if (got < 0) fail("corrupt gzip data at the end of the file (" + error_text() + ")");
    if (got > 0) fail("unexpected bytes after the data (the header's item count is too small)");
    int code = Z_OK;
    gzerror(file_handle_.get(), &code);
    if (code != Z_OK) fail("truncated gzip stream: the data is complete but its checksum is cut off");
  }

 private:
  // Reads between 1 and `size` bytes (`offset` of `total` already read, for
  // the message).
  std::size_t read_some(std::uint8_t* out, std::size_t size, const std::string& what, std::size_t offset,
                        std::size_t total) {
    const unsigned chunk = static_cast<unsigned>(std::min<std::size_t>(size, 1u << 26));
    const int got = gzread(file_handle_.get(), out, chunk);
    if (got < 0) fail("corrupt gzip data while reading " + what + " (" + error_text() + ")");
    if (got == 0)
      fail("truncated: " + what + " needs " + std::to_string(total) + " bytes, file ends after " +
           std::to_string(offset));
    return static_cast<std::size_t>(got);
  }

  std::string error_text() const {
    int code = 0;
    const char* msg = gzerror(file_handle_.get(), &code);
    return msg ? msg : "unknown zlib error";
  }

  std::string file_;
  std::unique_ptr<gzFile_s, GzCloser> file_handle_;
};

std::string hex(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

Dataset load_part(const std::string& dir, const std::string& prefix, std::size_t max_samples) {
  const std::string images_file = dir + "/" + prefix + "-images-idx3-ubyte.gz";
  const std::string labels_file = dir + "/" + prefix + "-labels-idx1-ubyte.gz";

  IdxReader images_in(images_file);
  const std::uint32_t image_magic = images_in.read_u32("the magic number");
  if (image_magic != kImageMagic)
    images_in.fail("bad magic number " + hex(image_magic) + ", expected " + hex(kImageMagic) +
                   " (idx image file)");
  const std::uint32_t image_count = images_in.read_u32("the item count");
  const std::uint32_t rows = images_in.read_u32("the row count");
  const std::uint32_t cols = images_in.read_u32("the column count");
  if (rows != kSide || cols != kSide)
    images_in.fail("images are " + std::to_string(rows) + "x" + std::to_string(cols) + ", expected " +
                   std::to_string(kSide) + "x" + std::to_string(kSide));

  IdxReader labels_in(labels_file);
  const std::uint32_t label_magic = labels_in.read_u32("the magic number");
  if (label_magic != kLabelMagic)
    labels_in.fail("bad magic number " + hex(label_magic) + ", expected " + hex(kLabelMagic) +
                   " (idx label file)");
  const std::uint32_t label_count = labels_in.read_u32("the item count");

  if (image_count != label_count)
    images_in.fail("holds " + std::to_string(image_count) + " images but " + labels_file + " holds " +
                   std::to_string(label_count) + " labels");
  if (image_count == 0) images_in.fail("holds no images");

  const std::size_t n = max_samples == 0 ? image_count : std::min<std::size_t>(max_samples, image_count);
  const bool whole_file = n == image_count;

  Dataset d;
  d.name = "fashion_mnist/" + prefix;
  d.num_classes = kClasses;

  const std::vector<std::uint8_t> raw_labels = labels_in.read_claimed(n, "the labels");
  if (whole_file) labels_in.expect_end();
  d.labels.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (raw_labels[i] >= kClasses)
      labels_in.fail("label " + std::to_string(raw_labels[i]) + " of item " + std::to_string(i) +
                     " is out of range, expected 0.." + std::to_string(kClasses - 1));
    d.labels[i] = raw_labels[i];
  }

  const std::size_t dim = std::size_t{kSide} * kSide;
  const std::vector<std::uint8_t> pixels = images_in.read_claimed(n * dim, "the pixels");
  if (whole_file) images_in.expect_end();
  d.features.set_size(dim, n);
  float* out = d.features.memptr();
  constexpr float kScale = 1.0f / 255.0f;
  for (std::size_t i = 0; i < pixels.size(); ++i) out[i] = static_cast<float>(pixels[i]) * kScale;
  return d;
}

class FashionMnistSource final : public DataSource {
 public:
  explicit FashionMnistSource(const Config& c)
      : dir_(c.get_string("path", kFashionMnistDefaultPath)),
        max_train_(static_cast<std::size_t>(c.get_int("train_samples", 0, 0, kMaxItems))),
        max_test_(static_cast<std::size_t>(c.get_int("test_samples", 0, 0, kMaxItems))) {}

  DataSplit load(std::uint64_t) const override { return load_fashion_mnist(dir_, max_train_, max_test_); }

 private:
  std::string dir_;
  std::size_t max_train_;
  std::size_t max_test_;
};

FEDSIM_REGISTER(
    DataSourceRegistry, "fashion_mnist",
    [](const Config& c) -> std::unique_ptr<DataSource> { return std::make_unique<FashionMnistSource>(c); },
    "Fashion-MNIST from gzip'd idx files (path, train_samples, test_samples)");

}  // namespace

DataSplit load_fashion_mnist(const std::string& dir, std::size_t max_train, std::size_t max_test) {
  DataSplit split;
  split.train = load_part(dir, "train", max_train);
  split.test = load_part(dir, "t10k", max_test);
  return split;
}

}  // namespace fedsim
