#include "otad/util/logging.hpp"

#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#if !defined(_WIN32)
#include <unistd.h>
#endif

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <spdlog/sinks/ostream_sink.h>

namespace otad::util {
namespace {

// A logger that writes only the message (%v) into a string stream.
struct CapturedLog {
    std::ostringstream out;
    std::shared_ptr<spdlog::logger> logger;

    CapturedLog() {
        logger = std::make_shared<spdlog::logger>("capture", std::make_shared<spdlog::sinks::ostream_sink_st>(out));
        logger->set_pattern("%v");
        logger->set_level(spdlog::level::info);
    }
    std::string line() const {
        auto text = out.str();
        if (!text.empty() && text.back() == '\n') text.pop_back();
        return text;
    }
};

class LogEventTest : public ::testing::Test {
protected:
    void TearDown() override { init_logging("info", LogFormat::text); }
};

TEST_F(LogEventTest, TextFormatQuotesOnlyWhatNeedsIt) {
    init_logging("info", LogFormat::text);
    CapturedLog log;
    log_event(*log.logger, spdlog::level::info, "request",
              {{"path", "/a/b"}, {"empty", ""}, {"spaced", "a b"}, {"quoted", "say \"hi\"\\"}, {"eq", "k=v"}});
    EXPECT_EQ(log.line(), R"(request path=/a/b empty="" spaced="a b" quoted="say \"hi\"\\" eq="k=v")");
}

TEST_F(LogEventTest, JsonFormatIsValidJsonForAnyValue) {
    init_logging("info", LogFormat::json);
    CapturedLog log;
    const std::string control = std::string("tab\there, nul ") + '\0' + " bell \x07";
    const std::string invalid_utf8 = "bad \xff\xfe bytes";
    log_event(*log.logger, spdlog::level::info, "request",
              {{"plain", "/api/v1/blobs"},
               {"quotes", "a\"b\\c"},
               {"control", control},
               {"utf8", "caf\xc3\xa9"},
               {"invalid", invalid_utf8},
               {"empty", ""}});
    // The JSON pattern wraps the message in an object; do the same to parse it.
    auto parsed = nlohmann::json::parse("{" + log.line() + "}");
    EXPECT_EQ(parsed["event"], "request");
    EXPECT_EQ(parsed["plain"], "/api/v1/blobs");
    EXPECT_EQ(parsed["quotes"], "a\"b\\c");
    EXPECT_EQ(parsed["control"], control);
    EXPECT_EQ(parsed["utf8"], "caf\xc3\xa9");
    EXPECT_EQ(parsed["invalid"], "bad \xef\xbf\xbd\xef\xbf\xbd bytes");  // U+FFFD for each bad byte
    EXPECT_EQ(parsed["empty"], "");
    // "event" stays the first key, the fields follow in order.
    EXPECT_EQ(log.line().rfind(R"("event":"request","plain":)", 0), 0u);
}

TEST_F(LogEventTest, BelowTheLevelNothingIsWritten) {
    init_logging("info", LogFormat::text);
    CapturedLog log;
    log_event(*log.logger, spdlog::level::debug, "noise", {{"k", "v"}});
    EXPECT_EQ(log.out.str(), "");
}

#if !defined(_WIN32)
// The shared sink writes each line with one write(2) and no lock: lines from
// many threads at once must come out whole, none lost.
TEST_F(LogEventTest, ConcurrentLinesOnStderrStayWhole) {
    init_logging("info", LogFormat::text);
    auto log = logger("concurrency-test");
    char path[] = "/tmp/otad-log-test-XXXXXX";
    const int fd = ::mkstemp(path);
    ASSERT_GE(fd, 0);
    std::fflush(stderr);
    const int saved = ::dup(2);
    ASSERT_GE(saved, 0);
    ASSERT_EQ(::dup2(fd, 2), 2);
    constexpr int threads = 8, lines = 500;
    {
        std::vector<std::thread> writers;
        for (int t = 0; t < threads; ++t)
            writers.emplace_back([&, t] {
                for (int i = 0; i < lines; ++i)
                    log_event(
                        *log, spdlog::level::info, "line",
                        {{"thread", std::to_string(t)}, {"n", std::to_string(i)}, {"pad", std::string(200, 'x')}});
            });
        for (auto& w : writers) w.join();
    }
    ::dup2(saved, 2);
    ::close(saved);
    ::close(fd);
    std::ifstream in(path);
    std::set<std::string> seen;
    std::string text;
    int count = 0;
    while (std::getline(in, text)) {
        ++count;
        auto at = text.find("concurrency-test: line thread=");
        ASSERT_NE(at, std::string::npos) << text;
        ASSERT_EQ(text.substr(text.size() - 205), " pad=" + std::string(200, 'x')) << text;
        seen.insert(text.substr(at));
    }
    std::remove(path);
    EXPECT_EQ(count, threads * lines);
    EXPECT_EQ(seen.size(), static_cast<std::size_t>(threads * lines));
}
#endif

}  // namespace
}  // namespace otad::util
