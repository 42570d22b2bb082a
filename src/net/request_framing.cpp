#include "otad/net/request_framing.hpp"

#include "otad/api/http.hpp"
#include "otad/util/strings.hpp"

namespace otad::net {

TransferCoding classify_transfer_encoding(const std::vector<std::string_view>& values) {
    std::size_t codings = 0;
    std::size_t chunked = 0;
    bool last_is_chunked = false;
    for (std::string_view value : values) {
        for (std::string_view element : util::split(value, ',')) {
            element = util::trim(element);
            if (element.empty()) continue;
            ++codings;
            last_is_chunked = api::iequals(element, "chunked");
            if (last_is_chunked) ++chunked;
        }
    }
    if (codings == 0) return values.empty() ? TransferCoding::none : TransferCoding::invalid;
    if (!last_is_chunked || chunked > 1) return TransferCoding::invalid;
    return codings == 1 ? TransferCoding::chunked : TransferCoding::unsupported;
}

std::optional<std::string_view> host_field_problem(unsigned version, std::size_t host_fields) noexcept {
    if (host_fields > 1) return "the request has more than one Host field";
    if (host_fields == 0 && version >= 11) return "an HTTP/1.1 request needs a Host field";
    return std::nullopt;
}

bool ByteBudget::try_take(std::uint64_t bytes) noexcept {
    auto current = in_use_.load(std::memory_order_acquire);
    do {
        if (bytes > capacity_ - current) return false;  // current <= capacity_ always
    } while (!in_use_.compare_exchange_weak(current, current + bytes, std::memory_order_acq_rel));
    return true;
}

bool BudgetReservation::hold(std::uint64_t bytes) noexcept {
    if (bytes > held_) {
        if (!budget_.try_take(bytes - held_)) return false;
    } else if (bytes < held_) {
        budget_.give_back(held_ - bytes);
    }
    held_ = bytes;
    return true;
}

void BudgetReservation::release() noexcept {
    if (held_ > 0) budget_.give_back(held_);
    held_ = 0;
}

std::chrono::steady_clock::time_point streamed_read_deadline(std::chrono::steady_clock::time_point started,
                                                             std::chrono::steady_clock::time_point now,
                                                             std::uint64_t received,
                                                             std::chrono::milliseconds body_timeout,
                                                             std::uint64_t min_rate) {
    const auto wait_for_bytes = now + body_timeout;
    if (min_rate == 0) return wait_for_bytes;
    // Each byte received earns 1/min_rate s beyond the grace of body_timeout.
    // Computed in ms; a body of up to 2^53 bytes cannot overflow.
    const auto earned = std::chrono::milliseconds(
        static_cast<std::int64_t>(received / min_rate * 1000 + received % min_rate * 1000 / min_rate));
    return std::min(wait_for_bytes, started + body_timeout + earned);
}

}  // namespace otad::net
