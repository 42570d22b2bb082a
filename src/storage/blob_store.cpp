#include "otad/storage/blob_store.hpp"

#include <fstream>
#include <set>
#include <vector>

#include <SQLiteCpp/Statement.h>

#include "otad/storage/database.hpp"
#include "otad/storage/error.hpp"
#include "otad/util/logging.hpp"
#include "otad/util/strings.hpp"
#include "sqlite_support.hpp"

namespace fs = std::filesystem;

namespace otad::storage {
namespace {

// A full file system is its own kind: the api answers it 507, not 500.
[[noreturn]] void throw_io(const std::system_error& e) {
    throw StorageError(is_no_space(e.code()) ? StorageErrorKind::no_space : StorageErrorKind::io, e.what());
}

std::optional<std::int64_t> file_age_seconds(const fs::path& path) {
    std::error_code ec;
    auto written = fs::last_write_time(path, ec);
    if (ec) return std::nullopt;
    auto age = fs::file_time_type::clock::now() - written;
    return std::chrono::duration_cast<std::chrono::seconds>(age).count();
}

}  // namespace

// --- BlobWriter -----------------------------------------------------------

BlobWriter::BlobWriter(BlobStore& store, fs::path temp_path, platform::WritableFile file, std::uint64_t max_bytes)
    : store_(&store),
      temp_path_(std::move(temp_path)),
      file_(std::move(file)),
      sha256_("sha256"),
      md5_("md5"),
      max_bytes_(max_bytes) {}

BlobWriter::BlobWriter(BlobWriter&& other) noexcept
    : store_(other.store_),
      temp_path_(std::move(other.temp_path_)),
      file_(std::move(other.file_)),
      sha256_(std::move(other.sha256_)),
      md5_(std::move(other.md5_)),
      size_(other.size_),
      max_bytes_(other.max_bytes_),
      finished_(std::exchange(other.finished_, true)) {}

BlobWriter::~BlobWriter() { abandon(); }

void BlobWriter::abandon() noexcept {
    if (finished_) return;
    finished_ = true;
    try {
        file_.close();
    } catch (const std::system_error&) {
        // The file is being thrown away; a failed close changes nothing.
    }
    std::error_code ignored;
    fs::remove(temp_path_, ignored);
}

void BlobWriter::write(std::string_view bytes) {
    if (finished_) throw std::logic_error("write to a finished BlobWriter");
    if (bytes.size() > max_bytes_ - size_) {
        abandon();
        throw BlobTooLarge(max_bytes_);
    }
    try {
        file_.write(bytes);
    } catch (const std::system_error& e) {
        abandon();
        throw_io(e);
    }
    sha256_.update(bytes);
    md5_.update(bytes);
    size_ += bytes.size();
}

BlobInfo BlobWriter::commit(std::optional<std::string_view> expected_sha256) {
    if (finished_) throw std::logic_error("commit of a finished BlobWriter");
    BlobInfo info{util::to_hex(sha256_.finish()), util::to_hex(md5_.finish()), size_};
    if (expected_sha256 && util::to_lower(*expected_sha256) != info.sha256) {
        abandon();
        throw StorageError(StorageErrorKind::mismatch, "uploaded bytes have SHA-256 " + info.sha256 + ", expected " +
                                                           std::string(*expected_sha256));
    }
    try {
        file_.sync();
        file_.close();
        const fs::path destination = store_->path_for(info.sha256);
        platform::ensure_directory(destination.parent_path());
        std::shared_lock gc_guard(store_->gc_mutex_);
        std::error_code ec;
        if (fs::is_regular_file(destination, ec) && fs::file_size(destination, ec) == info.size && !ec) {
            // Same SHA-256, same bytes: keep the stored copy, and refresh its mtime so
            // orphan collection sees it as fresh until our rows are inserted.
            fs::last_write_time(destination, fs::file_time_type::clock::now(), ec);
            fs::remove(temp_path_, ec);
        } else {
            fs::rename(temp_path_, destination);
            platform::fsync_directory(destination.parent_path());
        }
        finished_ = true;
    } catch (const std::system_error& e) {
        abandon();
        throw_io(e);
    }
    return info;
}

// --- BlobStore ------------------------------------------------------------

BlobStore::BlobStore(const fs::path& data_dir) : root_(data_dir / "blobs"), temp_dir_(root_ / "tmp") {
    try {
        platform::ensure_directory(root_, true);
        platform::ensure_directory(temp_dir_, true);
    } catch (const std::system_error& e) {
        throw_io(e);
    }
}

bool BlobStore::is_valid_sha256(std::string_view sha256) noexcept {
    if (sha256.size() != 64) return false;
    for (char c : sha256)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

fs::path BlobStore::path_for(std::string_view sha256) const {
    if (!is_valid_sha256(sha256))
        throw std::invalid_argument("not a lower-case hex SHA-256: '" + std::string(sha256.substr(0, 80)) + "'");
    return root_ / std::string(sha256.substr(0, 2)) / std::string(sha256.substr(2, 2)) / std::string(sha256);
}

BlobWriter BlobStore::open_writer(std::uint64_t max_bytes) {
    fs::path temp = temp_dir_ / ("upload-" + util::to_hex(util::random_bytes(16)));
    try {
        return BlobWriter(*this, temp, platform::WritableFile::create_exclusive(temp, true), max_bytes);
    } catch (const std::system_error& e) {
        throw_io(e);
    }
}

void BlobStore::probe_write() {
    const fs::path probe = temp_dir_ / ("probe-" + util::to_hex(util::random_bytes(8)));
    try {
        auto file = platform::WritableFile::create_exclusive(probe, true);
        file.write("otad readiness probe\n");
        file.sync();
        file.close();
    } catch (const std::system_error& e) {
        std::error_code ignored;
        fs::remove(probe, ignored);
        throw_io(e);
    }
    std::error_code ec;
    fs::remove(probe, ec);
    if (ec) throw StorageError(StorageErrorKind::io, "cannot remove " + probe.string() + ": " + ec.message());
}

bool BlobStore::exists(std::string_view sha256) const {
    std::error_code ec;
    return fs::is_regular_file(path_for(sha256), ec);
}

bool BlobStore::remove(std::string_view sha256) {
    std::error_code ec;
    bool removed = fs::remove(path_for(sha256), ec);
    if (ec) throw StorageError(StorageErrorKind::io, "cannot remove blob " + std::string(sha256) + ": " + ec.message());
    return removed;
}

bool BlobStore::remove_if_stale(std::string_view sha256, std::chrono::seconds grace) {
    const fs::path path = path_for(sha256);
    std::unique_lock gc_guard(gc_mutex_);
    auto age = file_age_seconds(path);
    if (!age || *age < grace.count()) return false;
    std::error_code ec;
    bool removed = fs::remove(path, ec);
    if (ec) throw StorageError(StorageErrorKind::io, "cannot remove blob " + std::string(sha256) + ": " + ec.message());
    return removed;
}

std::optional<std::int64_t> BlobStore::age_seconds(std::string_view sha256) const {
    return file_age_seconds(path_for(sha256));
}

bool BlobStore::verify(std::string_view sha256) const {
    std::ifstream in(path_for(sha256), std::ios::binary);
    if (!in) return false;
    util::Digest digest("sha256");
    std::vector<char> buffer(64 * 1024);
    while (in) {
        in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
        if (in.gcount() > 0) digest.update(std::string_view(buffer.data(), static_cast<std::size_t>(in.gcount())));
    }
    if (in.bad()) return false;
    return util::to_hex(digest.finish()) == sha256;
}

std::size_t BlobStore::cleanup_temp_files(std::chrono::seconds min_age) {
    std::vector<fs::path> stale;
    std::error_code ec;
    for (auto it = fs::directory_iterator(temp_dir_, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
        if (!it->is_regular_file(ec)) continue;
        auto age = file_age_seconds(it->path());
        if (age && *age >= min_age.count()) stale.push_back(it->path());
    }
    if (ec) throw StorageError(StorageErrorKind::io, "cannot list " + temp_dir_.string() + ": " + ec.message());
    std::size_t removed = 0;
    for (const auto& path : stale)
        if (fs::remove(path, ec)) ++removed;
    if (removed > 0)
        util::log_event(*util::logger("storage"), spdlog::level::info, "blob_temp_files_removed",
                        {{"count", std::to_string(removed)}});
    return removed;
}

// --- orphan collection ----------------------------------------------------

std::size_t collect_orphan_blobs(Database& database, BlobStore& store, std::chrono::seconds grace) {
    const std::int64_t cutoff = util::unix_now() - grace.count();
    std::set<std::string> rows;
    std::size_t rows_deleted = 0;
    try {
        // 1. Rows first, committed: a row must never outlive its file.
        WriteTransaction transaction(database);
        Connection& connection = transaction.connection();
        auto remove_rows = connection.prepare(
            "DELETE FROM blobs WHERE created_at <= ? "
            "AND NOT EXISTS (SELECT 1 FROM artifacts WHERE artifacts.sha256 = blobs.sha256)");
        remove_rows->bind(1, cutoff);
        rows_deleted = static_cast<std::size_t>(remove_rows->exec());
        auto remaining = connection.prepare("SELECT sha256 FROM blobs");
        while (remaining->executeStep()) rows.insert(remaining->getColumn(0).getString());
        transaction.commit();
    } catch (const SQLite::Exception& e) {
        detail::throw_storage_error(e, "collect orphan blob rows");
    }
    // 2. Files without a row. A file committed after the snapshot above is younger
    //    than `grace` (commit refreshes its mtime), so remove_if_stale keeps it.
    std::vector<std::string> candidates;
    store.for_each_blob([&](const std::string& sha256) {
        if (!rows.contains(sha256)) candidates.push_back(sha256);
    });
    std::size_t files_deleted = 0;
    for (const auto& sha256 : candidates)
        if (store.remove_if_stale(sha256, grace)) ++files_deleted;
    if (rows_deleted > 0 || files_deleted > 0)
        util::log_event(*util::logger("storage"), spdlog::level::info, "orphan_blobs_collected",
                        {{"rows", std::to_string(rows_deleted)}, {"files", std::to_string(files_deleted)}});
    return files_deleted;
}

// --- periodic collection --------------------------------------------------

OrphanBlobCollector::OrphanBlobCollector(Database& database, BlobStore& store, std::chrono::milliseconds period,
                                         std::chrono::seconds grace)
    : database_(database),
      store_(store),
      grace_(grace),
      task_("orphan blob collection", period, [this] { run_once(); }) {}

OrphanBlobCollector::~OrphanBlobCollector() { stop(); }

void OrphanBlobCollector::start() { task_.start(); }
void OrphanBlobCollector::stop() noexcept { task_.stop(); }

std::optional<std::size_t> OrphanBlobCollector::run_once() noexcept {
    std::optional<std::size_t> removed;
    try {
        removed = collect_orphan_blobs(database_, store_, grace_);
    } catch (const std::exception& e) {
        // A busy database or a full disk: the next period tries again.
        util::log_event(*util::logger("storage"), spdlog::level::warn, "orphan_blob_collection_failed",
                        {{"error", e.what()}});
    }
    runs_.fetch_add(1, std::memory_order_relaxed);
    return removed;
}

}  // namespace otad::storage
