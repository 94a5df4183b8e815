// Jitter buffer bindings: one class over voxwire::jitter::Buffer. Units come back as tuples
// (the Python wrapper turns them into frozen dataclasses); times are integer milliseconds.
// Per-20 ms calls keep the GIL: the work is a few hundred nanoseconds.

#include <cstdint>
#include <span>
#include <string>

#include "bindings.hpp"
#include "voxwire/jitter.hpp"

namespace voxwire::bindings {
namespace {

namespace jb = voxwire::jitter;

py::str name(std::string_view s) { return {s.data(), s.size()}; }

py::dict stats_dict(const jb::Stats& s) {
  py::dict d;
  d["packets_received"] = s.packets_received;
  d["packets_lost"] = s.packets_lost;
  d["packets_discarded"] = s.packets_discarded;
  d["packets_duplicated"] = s.packets_duplicated;
  d["packets_late"] = s.packets_late;
  d["packets_reordered"] = s.packets_reordered;
  d["packets_rejected"] = s.packets_rejected;
  d["jitter"] = s.jitter;
  d["jitter_buffer_delay"] = s.jitter_buffer_delay;
  d["jitter_buffer_target_delay"] = s.jitter_buffer_target_delay;
  d["jitter_buffer_emitted_count"] = s.jitter_buffer_emitted_count;
  d["total_samples"] = s.total_samples;
  d["concealed_samples"] = s.concealed_samples;
  d["silent_concealed_samples"] = s.silent_concealed_samples;
  d["concealment_events"] = s.concealment_events;
  d["fec_packets_received"] = s.fec_packets_received;
  d["fec_packets_discarded"] = s.fec_packets_discarded;
  d["fec_frames_used"] = s.fec_frames_used;
  d["inserted_samples_for_deceleration"] = s.inserted_samples_for_deceleration;
  d["removed_samples_for_acceleration"] = s.removed_samples_for_acceleration;
  d["restarts"] = s.restarts;
  return d;
}

}  // namespace

void bind_jitter(py::module_& m) {
  py::class_<jb::Buffer>(m, "JitterBuffer")
      .def(py::init([](std::uint32_t clock_rate, std::uint32_t frame_ms, std::uint32_t capacity,
                       std::size_t max_payload, std::int64_t min_delay_ms,
                       std::int64_t max_delay_ms, std::int64_t initial_delay_ms, double quantile,
                       double reorder_quantile, double forget, bool fec_lookahead,
                       std::int32_t g711_quiet_level, bool time_stretch) {
             jb::Config c;
             c.clock_rate = clock_rate;
             c.frame_ms = frame_ms;
             c.capacity = capacity;
             c.max_payload = max_payload;
             c.min_delay_ms = min_delay_ms;
             c.max_delay_ms = max_delay_ms;
             c.initial_delay_ms = initial_delay_ms;
             c.quantile = quantile;
             c.reorder_quantile = reorder_quantile;
             c.forget = forget;
             c.fec_lookahead = fec_lookahead;
             c.g711_quiet_level = g711_quiet_level;
             c.time_stretch = time_stretch;
             return jb::Buffer(c);
           }),
           py::arg("clock_rate"), py::arg("frame_ms"), py::arg("capacity"),
           py::arg("max_payload"), py::arg("min_delay_ms"), py::arg("max_delay_ms"),
           py::arg("initial_delay_ms"), py::arg("quantile"), py::arg("reorder_quantile"),
           py::arg("forget"), py::arg("fec_lookahead"), py::arg("g711_quiet_level"),
           py::arg("time_stretch"))
      .def(
          "insert",
          [](jb::Buffer& self, std::uint16_t sequence, std::uint32_t timestamp,
             const py::buffer& payload, std::int64_t arrival_ms, std::uint32_t ssrc,
             std::uint8_t payload_type, bool marker, bool has_fec, bool low_energy) {
            py::buffer_info keep;
            jb::Packet p;
            p.sequence = sequence;
            p.timestamp = timestamp;
            p.ssrc = ssrc;
            p.payload_type = payload_type;
            p.marker = marker;
            p.has_fec = has_fec;
            p.low_energy = low_energy;
            p.payload = contiguous_bytes(payload, keep);
            return name(jb::to_string(self.insert(p, arrival_ms)));
          },
          py::arg("sequence"), py::arg("timestamp"), py::arg("payload"), py::arg("arrival_ms"),
          py::arg("ssrc"), py::arg("payload_type"), py::arg("marker"), py::arg("has_fec"),
          py::arg("low_energy"))
      .def(
          "insert_redundant",
          [](jb::Buffer& self, std::uint32_t timestamp, std::uint8_t payload_type,
             const py::buffer& payload, std::int64_t arrival_ms, bool has_fec) {
            py::buffer_info keep;
            return name(jb::to_string(
                self.insert_redundant(timestamp, payload_type, contiguous_bytes(payload, keep),
                                      arrival_ms, has_fec)));
          },
          py::arg("timestamp"), py::arg("payload_type"), py::arg("payload"),
          py::arg("arrival_ms"), py::arg("has_fec"))
      .def(
          "pull",
          [](jb::Buffer& self, std::int64_t now_ms) {
            const jb::Unit u = self.pull(now_ms);
            return py::make_tuple(
                name(jb::to_string(u.kind)), name(jb::to_string(u.adjustment)), u.decode_fec,
                u.low_energy, u.frame, u.timestamp, u.sequence, u.payload_type, u.samples,
                u.delay_ms,
                py::bytes(reinterpret_cast<const char*>(u.payload.data()), u.payload.size()),
                name(jb::to_string(u.stretch)));
          },
          py::arg("now_ms"))
      .def("note_stretch", &jb::Buffer::note_stretch, py::arg("samples"))
      .def("stats", [](const jb::Buffer& self) { return stats_dict(self.stats()); })
      .def("reset", &jb::Buffer::reset)
      .def_property_readonly("target_delay_ms", &jb::Buffer::target_delay_ms)
      .def_property_readonly("size", &jb::Buffer::size)
      .def_property_readonly("samples_per_frame", &jb::Buffer::samples_per_frame);
}

}  // namespace voxwire::bindings
