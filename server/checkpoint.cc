#include "server/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "core/base/errors.h"
#include "core/base/rng.h"

namespace fedsim {
namespace {

constexpr char kMagic[8] = {'F', 'E', 'D', 'S', 'I', 'M', 'C', 'K'};
constexpr std::size_t kHeaderBytes = 8 + 4 + 8 + 8 + 8;
constexpr std::size_t kTrailerBytes = 4;

// A field added to one of these structs must be added to its codec below
// (and kCheckpointVersion raised): these sizes stop the build until it is.
static_assert(sizeof(EnergyBreakdown) == 6 * 8, "EnergyBreakdown changed: update its checkpoint codec");
static_assert(sizeof(RoundCost) == 4 * 8 + 8 + sizeof(EnergyBreakdown) + 8, "RoundCost changed: update its codec");
static_assert(sizeof(Flight) == 4 + 4 + 8 + 8 + 8 + sizeof(std::string) + 8 + sizeof(RoundCost),
              "Flight changed: update its checkpoint codec");
static_assert(sizeof(UpdateHeader) == 32, "UpdateHeader changed: update its checkpoint codec");
static_assert(sizeof(ArrivalRecord) == 4 + 4 + 8 + 8 + 8 + 8 + 8 + 8 + sizeof(RoundCost),
              "ArrivalRecord changed: update its checkpoint codec");
static_assert(sizeof(RoundMetrics) == 8 * 8 + sizeof(EnergyBreakdown) + 3 * 8 + 8 + 8 + 2 * 8 +
                                         sizeof(std::vector<double>) + 2 * 8 + 3 * 8 + 2 * 8,
              "RoundMetrics changed: update its checkpoint codec");

std::array<std::uint32_t, 256> crc_table() {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}

void sync_fd(int fd, const std::string& what) {
  if (::fsync(fd) != 0) throw InputError(what + ": fsync failed: " + std::strerror(errno));
}

template <typename T>
void put_raw(std::string& s, T v) {
  char raw[sizeof(T)];
  std::memcpy(raw, &v, sizeof(T));
  s.append(raw, sizeof(T));
}

template <typename T>
T get_raw(std::string_view s, std::size_t at) {
  T v;
  std::memcpy(&v, s.data() + at, sizeof(T));
  return v;
}

}  // namespace

std::uint32_t crc32c(std::string_view bytes) {
  static const std::array<std::uint32_t, 256> table = crc_table();
  std::uint32_t c = ~0u;
  for (unsigned char b : bytes) c = table[(c ^ b) & 0xff] ^ (c >> 8);
  return ~c;
}

std::uint64_t scenario_fingerprint(const Scenario& scenario) {
  YAML::Node tree = YAML::Clone(scenario.root.node());
  tree.remove("threads");
  tree.remove("output");
  YAML::Emitter out;
  out << tree;
  std::uint64_t h = mix64(0x66656473696d636bULL);
  for (unsigned char c : std::string_view(out.c_str(), out.size())) h = mix64(h ^ c);
  return h;
}

std::string checkpoint_path(const std::string& dir) { return (std::filesystem::path(dir) / "checkpoint.bin").string(); }

void write_checkpoint(const std::string& dir, std::uint64_t fingerprint, std::uint64_t round, std::string_view state) {
  std::string file;
  file.reserve(kHeaderBytes + state.size() + kTrailerBytes);
  file.append(kMagic, sizeof(kMagic));
  put_raw(file, kCheckpointVersion);
  put_raw(file, fingerprint);
  put_raw(file, round);
  put_raw<std::uint64_t>(file, state.size());
  file.append(state);
  put_raw(file, crc32c(file));

  const std::string final_path = checkpoint_path(dir);
  const std::string tmp = (std::filesystem::path(dir) / "checkpoint.tmp").string();
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw InputError(tmp + ": cannot write the checkpoint: " + std::strerror(errno));
  std::size_t done = 0;
  while (done < file.size()) {
    const ssize_t n = ::write(fd, file.data() + done, file.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = std::strerror(errno);
      ::close(fd);
      throw InputError(tmp + ": cannot write the checkpoint: " + why);
    }
    done += static_cast<std::size_t>(n);
  }
  sync_fd(fd, tmp);
  ::close(fd);
  std::error_code ec;
  std::filesystem::rename(tmp, final_path, ec);
  if (ec) throw InputError(final_path + ": cannot replace the checkpoint: " + ec.message());
  const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    sync_fd(dfd, dir);
    ::close(dfd);
  }
}

LoadedCheckpoint read_checkpoint(const std::string& dir, std::uint64_t fingerprint) {
  const std::string path = checkpoint_path(dir);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": no checkpoint to resume from (run with --checkpoint-every K first)");
  std::ostringstream buf;
  buf << in.rdbuf();
  return parse_checkpoint(buf.str(), fingerprint, path);
}

LoadedCheckpoint parse_checkpoint(const std::string& file, std::uint64_t fingerprint, const std::string& path) {
  const std::string bad = path + ": ";
  if (file.size() < sizeof(kMagic) || std::memcmp(file.data(), kMagic, sizeof(kMagic)) != 0)
    throw InputError(bad + "not a fedsim checkpoint (it does not start with FEDSIMCK)");
  if (file.size() < kHeaderBytes + kTrailerBytes)
    throw InputError(bad + "truncated checkpoint (" + std::to_string(file.size()) + " bytes, less than a header)");
  const auto version = get_raw<std::uint32_t>(file, 8);
  if (version != kCheckpointVersion)
    throw InputError(bad + "checkpoint format version " + std::to_string(version) + "; this fedsim reads version " +
                     std::to_string(kCheckpointVersion) + " only");
  const auto length = get_raw<std::uint64_t>(file, 28);
  if (length != file.size() - kHeaderBytes - kTrailerBytes)
    throw InputError(bad + "truncated checkpoint (the header announces " + std::to_string(length) +
                     " bytes of state, the file holds " +
                     std::to_string(file.size() - kHeaderBytes - kTrailerBytes) + ")");
  const std::size_t body = file.size() - kTrailerBytes;
  if (crc32c(std::string_view(file).substr(0, body)) != get_raw<std::uint32_t>(file, body))
    throw InputError(bad + "corrupt checkpoint (CRC-32C mismatch): refusing to resume from it");
  if (get_raw<std::uint64_t>(file, 12) != fingerprint)
    throw InputError(bad + "the checkpoint was written for another scenario (or other --set overrides, or another "
                           "seed); resume with the same scenario and overrides");
  return LoadedCheckpoint{get_raw<std::uint64_t>(file, 20), file.substr(kHeaderBytes, length)};
}

void save_state(StateWriter& out, const EnergyBreakdown& e) {
  out.put(e.compute_j), out.put(e.tx_j), out.put(e.rx_j), out.put(e.idle_j), out.put(e.promotion_j), out.put(e.tail_j);
}

void restore_state(StateReader& in, EnergyBreakdown& e) {
  e.compute_j = in.get<double>();
  e.tx_j = in.get<double>();
  e.rx_j = in.get<double>();
  e.idle_j = in.get<double>();
  e.promotion_j = in.get<double>();
  e.tail_j = in.get<double>();
}

void save_state(StateWriter& out, const RoundCost& c) {
  out.put(c.server_s), out.put(c.down_s), out.put(c.compute_s), out.put(c.up_s);
  out.put<std::uint64_t>(c.level);
  save_state(out, c.energy);
  out.put(c.lost_down), out.put(c.lost_up);
}

void restore_state(StateReader& in, RoundCost& c) {
  c.server_s = in.get<double>();
  c.down_s = in.get<double>();
  c.compute_s = in.get<double>();
  c.up_s = in.get<double>();
  c.level = static_cast<std::size_t>(in.get<std::uint64_t>());
  restore_state(in, c.energy);
  c.lost_down = in.get<bool>();
  c.lost_up = in.get<bool>();
}

void save_state(StateWriter& out, const RoundMetrics& m) {
  out.put(m.round), out.put(m.sim_time_s), out.put(m.test_accuracy), out.put(m.test_loss), out.put(m.train_loss);
  out.put(m.bytes_up), out.put(m.bytes_down), out.put(m.clients);
  save_state(out, m.energy);
  out.put(m.dropped_deadline), out.put(m.dropped_offline), out.put(m.dropped_battery);
  out.put(m.round_time_s), out.put(m.uplink_bits_per_coord), out.put(m.rejected), out.put(m.censored);
  out.vec(m.class_energy_j);
  out.put(m.server_j), out.put(m.grid_j), out.put(m.sparsity), out.put(m.consensus_distance), out.put(m.objective);
  out.put(m.dropped_network), out.put(m.attackers);
}

void restore_state(StateReader& in, RoundMetrics& m) {
  m.round = in.get<std::uint64_t>();
  m.sim_time_s = in.get<double>();
  m.test_accuracy = in.get<double>();
  m.test_loss = in.get<double>();
  m.train_loss = in.get<double>();
  m.bytes_up = in.get<std::uint64_t>();
  m.bytes_down = in.get<std::uint64_t>();
  m.clients = in.get<std::uint64_t>();
  restore_state(in, m.energy);
  m.dropped_deadline = in.get<std::uint64_t>();
  m.dropped_offline = in.get<std::uint64_t>();
  m.dropped_battery = in.get<std::uint64_t>();
  m.round_time_s = in.get<double>();
  m.uplink_bits_per_coord = in.get<double>();
  m.rejected = in.get<std::uint64_t>();
  m.censored = in.get<std::uint64_t>();
  m.class_energy_j = in.vec<double>();
  m.server_j = in.get<double>();
  m.grid_j = in.get<double>();
  m.sparsity = in.get<double>();
  m.consensus_distance = in.get<double>();
  m.objective = in.get<double>();
  m.dropped_network = in.get<std::uint64_t>();
  m.attackers = in.get<std::uint64_t>();
}

void save_state(StateWriter& out, const Flight& f) {
  out.put(f.client), out.put(f.round), out.put(f.start_s), out.put(f.arrive_s), out.put(f.bytes_down);
  out.str(f.update);
  out.put(f.macs);
  save_state(out, f.cost);
}

void restore_state(StateReader& in, Flight& f) {
  f.client = in.get<std::uint32_t>();
  f.round = in.get<std::uint32_t>();
  f.start_s = in.get<double>();
  f.arrive_s = in.get<double>();
  f.bytes_down = in.get<std::uint64_t>();
  f.update = in.str();
  f.macs = in.get<double>();
  restore_state(in, f.cost);
}

void save_state(StateWriter& out, const ReceivedUpdate& u) {
  const UpdateHeader& h = u.header;
  out.put(h.client), out.put(h.round), out.put(h.base_version), out.put(h.num_samples), out.put(h.train_loss);
  out.put(h.skipped);
  out.put(u.wire_bytes);
  out.vec(u.vector);
}

void restore_state(StateReader& in, ReceivedUpdate& u, std::size_t dim) {
  UpdateHeader& h = u.header;
  h.client = in.get<std::uint32_t>();
  h.round = in.get<std::uint32_t>();
  h.base_version = in.get<std::uint64_t>();
  h.num_samples = in.get<std::uint32_t>();
  h.train_loss = in.get<float>();
  h.skipped = in.get<bool>();
  u.wire_bytes = in.get<std::uint64_t>();
  u.vector = in.col<float>(dim);
}

void save_state(StateWriter& out, const ArrivalRecord& a) {
  out.put(a.round), out.put(a.client), out.put(a.start_s), out.put(a.arrive_s), out.put(a.bytes_down);
  out.put(a.bytes_up), out.put(a.macs), out.put(a.aggregated);
  save_state(out, a.cost);
}

void restore_state(StateReader& in, ArrivalRecord& a) {
  a.round = in.get<std::uint32_t>();
  a.client = in.get<std::uint32_t>();
  a.start_s = in.get<double>();
  a.arrive_s = in.get<double>();
  a.bytes_down = in.get<std::uint64_t>();
  a.bytes_up = in.get<std::uint64_t>();
  a.macs = in.get<double>();
  a.aggregated = in.get<bool>();
  restore_state(in, a.cost);
}

}  // namespace fedsim
