#pragma once
// Boost.Asio for the clock module. <utility> must precede Asio with GCC 12 in
// C++20 mode. GCC 12 at -O2 reports a false "potential null pointer
// dereference" inside Asio 1.74's epoll reactor (scheduler.ipp,
// compensating_work_started: the thread_info is non-null whenever it runs);
// the diagnostic is located in Asio's own lines, so silencing it here hides
// nothing of ours.
#include <utility>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#pragma GCC diagnostic pop
