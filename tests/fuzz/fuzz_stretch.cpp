// libFuzzer target for the time-stretching kernel: arbitrary audio at 8, 16 or 48 kHz and
// arbitrary frame lengths. Outputs must have the documented size, change only by a period
// the frame can hold, and splice: the first and last samples are the input's.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "voxwire/stretch.hpp"

namespace st = voxwire::stretch;

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

void check(st::Stretcher& s, std::span<const std::int16_t> in) {
  std::vector<std::int16_t> out(in.size() + s.max_period());
  const st::Result a = s.shorten(in, out);
  require(a.period <= s.max_period(in.size()));
  require(a.size == in.size() - a.period);
  if (!in.empty()) {
    require(out[0] == in[0]);
    if (a.size > 0) require(out[a.size - 1] == in.back());
  }
  const st::Result b = s.lengthen(in, out);
  require(b.period <= s.max_period(in.size()));
  require(b.size == in.size() + b.period);
  if (!in.empty()) {
    require(out[0] == in[0]);
    require(out[b.size - 1] == in.back());
  }
  require(a.correlation >= 0.0 && a.correlation <= 1.0 + 1e-9);
  const std::size_t count = in.empty() ? 0 : (in[0] & 0x7FFF) % (in.size() / 2 + 1);
  const st::Result c = s.cut(in, out, count);
  require(c.period == 0 || c.period == count);
  require(c.size == in.size() - c.period);
  if (!in.empty() && c.size > 0) {
    require(out[0] == in[0] || c.size - 1 == 0);
    require(out[c.size - 1] == in.back());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  static const std::uint32_t kRates[] = {8000, 16000, 48000, 12000};
  st::Config c;
  c.sample_rate = kRates[data[0] % 4];
  c.max_frame = static_cast<std::size_t>(c.sample_rate / 25);  // 40 ms
  c.min_level = data[0] & 4 ? 0 : 64;
  c.min_correlation = (data[0] & 8) != 0 ? 0.05 : 0.85;
  st::Stretcher s(c);
  std::vector<std::int16_t> x((size - 3) / 2);
  for (std::size_t i = 0; i < x.size(); ++i) {
    x[i] = static_cast<std::int16_t>(data[3 + 2 * i] | (data[4 + 2 * i] << 8));
  }
  const std::size_t want = static_cast<std::size_t>(data[1]) | (static_cast<std::size_t>(data[2]) << 8);
  const std::size_t n = std::min(x.size(), want % (c.max_frame + 1));
  check(s, std::span<const std::int16_t>(x.data(), n));
  // The same audio repeated every `lag` samples: periodic input takes the stretching path.
  if (n > 0) {
    std::vector<std::int16_t> periodic(c.max_frame);
    const std::size_t lag = 1 + n % (c.max_frame / 2);
    for (std::size_t i = 0; i < periodic.size(); ++i) periodic[i] = x[i % std::min(n, lag)];
    check(s, periodic);
  }
  return 0;
}
