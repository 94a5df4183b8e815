// RTP bindings: parse/build as plain functions over bytes-like objects, Source as a class.
// A malformed packet raises voxwire.errors.RtpError with its reason; network conditions
// (loss, reordering, duplicates, jumps) are verdicts and counters, never exceptions.

#include <cmath>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "bindings.hpp"
#include "voxwire/red.hpp"
#include "voxwire/rtp.hpp"

namespace voxwire::bindings {
namespace {

namespace rtp = voxwire::rtp;
namespace red = voxwire::red;

// ValueError "<what>: <name> must be 0..<hi>, got <v>" unless 0 <= v <= hi.
void require_range(const char* what, const char* name, std::int64_t v, std::int64_t hi) {
  if (v < 0 || v > hi) {
    throw py::value_error(std::string(what) + ": " + name + " must be 0.." + std::to_string(hi) +
                          ", got " + std::to_string(v));
  }
}

py::tuple parse(const py::buffer& data) {
  py::buffer_info keep;
  const auto packet = contiguous_bytes(data, keep);
  rtp::Header h;
  const auto err = rtp::parse(packet, h);
  if (err != rtp::ParseError::ok) {
    const std::string reason(rtp::to_string(err));
    raise_reasoned("RtpError", reason, "malformed RTP packet (" + reason + ", " +
                                           std::to_string(packet.size()) + " bytes)");
  }
  py::tuple csrcs(h.csrc_count);
  for (std::size_t i = 0; i < h.csrc_count; ++i) csrcs[i] = py::int_(h.csrcs[i]);
  const auto* base = reinterpret_cast<const char*>(packet.data());
  py::object extension = py::none();
  if (h.has_extension) {
    extension = py::make_tuple(h.extension_profile,
                               py::bytes(base + h.extension_offset, h.extension_size));
  }
  return py::make_tuple(h.marker, h.payload_type, h.sequence, h.timestamp, h.ssrc, csrcs,
                        extension, py::bytes(base + h.payload_offset, h.payload_size),
                        h.padding_size);
}

py::bytes build(bool marker, int payload_type, int sequence, std::int64_t timestamp,
                std::int64_t ssrc, const std::vector<std::int64_t>& csrcs,
                std::optional<int> extension_profile, const py::buffer& extension,
                const py::buffer& payload, int padding) {
  auto in_range = [](const char* name, std::int64_t v, std::int64_t hi) {
    require_range("rtp build", name, v, hi);
  };
  in_range("payload_type", payload_type, 127);
  in_range("sequence", sequence, 0xFFFF);
  in_range("timestamp", timestamp, 0xFFFFFFFFLL);
  in_range("ssrc", ssrc, 0xFFFFFFFFLL);
  in_range("padding", padding, 255);
  if (csrcs.size() > 15) {
    throw py::value_error("rtp build: at most 15 CSRCs, got " + std::to_string(csrcs.size()));
  }
  std::vector<std::uint32_t> ids;
  for (const auto c : csrcs) {
    in_range("csrc", c, 0xFFFFFFFFLL);
    ids.push_back(static_cast<std::uint32_t>(c));
  }
  py::buffer_info keep_ext;
  py::buffer_info keep_payload;
  rtp::BuildSpec spec;
  spec.marker = marker;
  spec.payload_type = static_cast<std::uint8_t>(payload_type);
  spec.sequence = static_cast<std::uint16_t>(sequence);
  spec.timestamp = static_cast<std::uint32_t>(timestamp);
  spec.ssrc = static_cast<std::uint32_t>(ssrc);
  spec.csrcs = ids;
  if (extension_profile) in_range("extension profile", *extension_profile, 0xFFFF);
  spec.has_extension = extension_profile.has_value();
  spec.extension_profile = static_cast<std::uint16_t>(extension_profile.value_or(0));
  spec.extension = contiguous_bytes(extension, keep_ext);
  spec.padding = static_cast<std::uint8_t>(padding);
  const auto body = contiguous_bytes(payload, keep_payload);
  const std::size_t size = rtp::built_size(spec, body.size());
  auto out = py::reinterpret_steal<py::bytes>(
      PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(size)));
  if (!out) throw py::error_already_set();
  rtp::build(spec, body,
             std::span<std::byte>(reinterpret_cast<std::byte*>(PyBytes_AS_STRING(out.ptr())), size));
  return out;
}

// RFC 2198: ((primary_pt, primary), [(pt, offset, data), ...]).
py::tuple red_parse(const py::buffer& data) {
  py::buffer_info keep;
  const auto payload = contiguous_bytes(data, keep);
  red::Payload p;
  const auto err = red::parse(payload, p);
  if (err != red::ParseError::ok) {
    const std::string reason = "red_" + std::string(red::to_string(err));
    raise_reasoned("RtpError", reason, "malformed RED payload (" + reason + ", " +
                                           std::to_string(payload.size()) + " bytes)");
  }
  auto as_bytes = [](std::span<const std::byte> s) {
    return py::bytes(reinterpret_cast<const char*>(s.data()), s.size());
  };
  py::list blocks;
  for (std::size_t i = 0; i < p.count; ++i) {
    const red::Block& b = p.redundant[i];
    blocks.append(py::make_tuple(b.payload_type, b.timestamp_offset, as_bytes(b.data)));
  }
  return py::make_tuple(py::make_tuple(p.primary.payload_type, as_bytes(p.primary.data)),
                        blocks);
}

py::bytes red_build(int primary_type, const py::buffer& primary,
                    const std::vector<std::tuple<int, std::int64_t, py::buffer>>& redundant) {
  auto check = [](const char* name, std::int64_t v, std::int64_t hi) {
    require_range("red build", name, v, hi);
  };
  if (redundant.size() > red::kMaxBlocks) {
    throw py::value_error("red build: at most " + std::to_string(red::kMaxBlocks) +
                          " redundant blocks, got " + std::to_string(redundant.size()));
  }
  check("payload_type", primary_type, 127);
  std::vector<py::buffer_info> keep(redundant.size() + 1);
  std::vector<red::Block> blocks;
  for (std::size_t i = 0; i < redundant.size(); ++i) {
    const auto& [pt, offset, data] = redundant[i];
    check("payload_type", pt, 127);
    check("timestamp_offset", offset, red::kMaxOffset);
    red::Block b{static_cast<std::uint8_t>(pt), static_cast<std::uint32_t>(offset),
                 contiguous_bytes(data, keep[i])};
    check("redundant block size", static_cast<std::int64_t>(b.data.size()),
          static_cast<std::int64_t>(red::kMaxBlockSize));
    blocks.push_back(b);
  }
  const red::Block main{static_cast<std::uint8_t>(primary_type), 0,
                        contiguous_bytes(primary, keep.back())};
  const std::size_t size = red::built_size(blocks, main);
  auto out = py::reinterpret_steal<py::bytes>(
      PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(size)));
  if (!out) throw py::error_already_set();
  red::build(blocks, main,
             std::span<std::byte>(reinterpret_cast<std::byte*>(PyBytes_AS_STRING(out.ptr())), size));
  return out;
}

py::dict stats_dict(const rtp::SourceStats& s) {
  py::dict d;
  d["received"] = s.received;
  d["expected"] = s.expected;
  d["lost"] = s.lost;
  d["duplicates"] = s.duplicates;
  d["reordered"] = s.reordered;
  d["too_old"] = s.too_old;
  d["bad_jumps"] = s.bad_jumps;
  d["foreign_ssrc"] = s.foreign_ssrc;
  d["probation"] = s.probation;
  d["restarts"] = s.restarts;
  d["jitter"] = s.jitter;
  d["jitter_seconds"] = s.jitter_seconds;
  d["fraction_lost"] = s.fraction_lost;
  return d;
}

}  // namespace

void bind_rtp(py::module_& m) {
  m.def("rtp_parse", &parse, py::arg("data"),
        "Parse one RTP packet into (marker, payload_type, sequence, timestamp, ssrc, csrcs, "
        "extension, payload, padding); raise voxwire.errors.RtpError if malformed.");
  m.def("rtp_build", &build, py::arg("marker"), py::arg("payload_type"), py::arg("sequence"),
        py::arg("timestamp"), py::arg("ssrc"), py::arg("csrcs"), py::arg("extension_profile"),
        py::arg("extension"), py::arg("payload"), py::arg("padding"),
        "Build one RTP packet and return its bytes.");
  m.def("red_parse", &red_parse, py::arg("data"),
        "Parse an RFC 2198 payload into ((primary_pt, primary), [(pt, offset, data), ...]); "
        "raise voxwire.errors.RtpError (reason red_*) if malformed.");
  m.def("red_build", &red_build, py::arg("primary_type"), py::arg("primary"),
        py::arg("redundant"), "Build an RFC 2198 payload; redundant blocks oldest first.");

  py::class_<rtp::Source>(m, "RtpSource")
      .def(py::init([](std::uint32_t clock_rate, std::uint32_t min_sequential,
                       std::uint32_t max_dropout, std::uint32_t max_misorder) {
             rtp::SourceConfig cfg;
             cfg.clock_rate = clock_rate;
             cfg.min_sequential = min_sequential;
             cfg.max_dropout = max_dropout;
             cfg.max_misorder = max_misorder;
             return rtp::Source(cfg);
           }),
           py::arg("clock_rate"), py::arg("min_sequential"), py::arg("max_dropout"),
           py::arg("max_misorder"))
      .def(
          "receive",
          [](rtp::Source& self, std::uint16_t sequence, std::uint32_t timestamp,
             std::uint32_t ssrc, std::int64_t arrival_ms, bool timed) {
            rtp::Header h;
            h.sequence = sequence;
            h.timestamp = timestamp;
            h.ssrc = ssrc;
            const auto r = self.receive(h, arrival_ms, timed);
            return py::make_tuple(std::string(rtp::to_string(r.verdict)), r.restarted,
                                  r.extended_sequence, r.extended_timestamp);
          },
          py::arg("sequence"), py::arg("timestamp"), py::arg("ssrc"), py::arg("arrival_ms"),
          py::arg("timed") = true)
      .def("stats", [](const rtp::Source& self) { return stats_dict(self.stats()); })
      .def("interval_report",
           [](rtp::Source& self) { return stats_dict(self.interval_report()); })
      .def("reset", &rtp::Source::reset)
      .def_property_readonly("valid", &rtp::Source::valid)
      .def_property_readonly("ssrc", &rtp::Source::ssrc)
      .def_property_readonly("highest_sequence", &rtp::Source::highest_sequence);
}

}  // namespace voxwire::bindings
