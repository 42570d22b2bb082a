#pragma once
// Framing rules of RFC 9112 that Beast's parser leaves to net, and the limits on
// request bodies that net enforces across connections. Beast-free, so each rule
// can be tested alone.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace otad::net {

// What a request's Transfer-Encoding says about its body.
enum class TransferCoding {
    none,         // no Transfer-Encoding field
    chunked,      // exactly "chunked" (any case): the body is chunked
    invalid,      // the final coding is not chunked, or chunked is applied twice: the
                  // body's length cannot be known; 400 and close (RFC 9112 §6.3)
    unsupported,  // other codings before a final chunked ("gzip, chunked"): 501 and close
                  // (RFC 9112 §6.1; otad decodes no transfer coding but chunked)
};

// `values`: every Transfer-Encoding field value of the request in arrival order;
// several fields form one list, as RFC 9110 §5.3 says. Empty list elements are
// skipped; an element is compared whole (a parameter makes it another coding).
TransferCoding classify_transfer_encoding(const std::vector<std::string_view>& values);

// Why the Host fields of a request are refused with 400 (RFC 9112 §3.2), or
// nullopt: an HTTP/1.1 request has exactly one, an HTTP/1.0 request at most one.
// `version`: 10 or 11.
std::optional<std::string_view> host_field_problem(unsigned version, std::size_t host_fields) noexcept;

// A budget of bytes shared by every connection (the memory for buffered request
// bodies). Lock-free; reservations never take it past its capacity.
class ByteBudget {
public:
    explicit ByteBudget(std::uint64_t capacity) noexcept : capacity_(capacity) {}
    ByteBudget(const ByteBudget&) = delete;
    ByteBudget& operator=(const ByteBudget&) = delete;

    // Takes `bytes` if that many are free; false (and nothing taken) otherwise.
    bool try_take(std::uint64_t bytes) noexcept;
    // Gives back bytes taken before.
    void give_back(std::uint64_t bytes) noexcept { in_use_.fetch_sub(bytes, std::memory_order_acq_rel); }
    std::uint64_t capacity() const noexcept { return capacity_; }
    std::uint64_t in_use() const noexcept { return in_use_.load(std::memory_order_acquire); }

private:
    const std::uint64_t capacity_;
    std::atomic<std::uint64_t> in_use_{0};
};

// Holds part of a ByteBudget for as long as it lives (one request's body).
class BudgetReservation {
public:
    explicit BudgetReservation(ByteBudget& budget) noexcept : budget_(budget) {}
    BudgetReservation(const BudgetReservation&) = delete;
    BudgetReservation& operator=(const BudgetReservation&) = delete;
    ~BudgetReservation() { release(); }

    // Holds `bytes` in all (more or fewer than now); false, holding what it held
    // before, when the budget cannot give the difference.
    bool hold(std::uint64_t bytes) noexcept;
    void release() noexcept;
    std::uint64_t held() const noexcept { return held_; }

private:
    ByteBudget& budget_;
    std::uint64_t held_ = 0;
};

// When the next read of a streamed body (an upload) times out. A read may wait
// `body_timeout` for bytes; and once the body has run for longer than
// `body_timeout`, the bytes received must keep up with `min_rate` bytes per
// second over the time beyond it: a sender that trickles is cut off as one that
// stops is, whatever the size of the body. `min_rate` 0: no rate, only the wait.
std::chrono::steady_clock::time_point streamed_read_deadline(std::chrono::steady_clock::time_point started,
                                                             std::chrono::steady_clock::time_point now,
                                                             std::uint64_t received,
                                                             std::chrono::milliseconds body_timeout,
                                                             std::uint64_t min_rate);

}  // namespace otad::net
