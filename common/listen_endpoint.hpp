#pragma once
// The TCP endpoint a listener binds, from a `host:port` config value (metrics.listen,
// openai.listen, server.tcp_listen). Shared by every TCP listener droverd opens.
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <string>

namespace drover {

// An address literal is used as it is; a host name is resolved once (blocking: start-up only).
// Throws std::runtime_error naming `key` when the value is not host:port or does not resolve.
boost::asio::ip::tcp::endpoint resolve_listen_endpoint(boost::asio::io_context& io,
                                                       const std::string& listen,
                                                       const std::string& key);

// A listening acceptor on `listen` (SO_REUSEADDR: a restarted droverd may bind while old
// connections sit in TIME_WAIT). Throws std::runtime_error naming `key` when it cannot.
boost::asio::ip::tcp::acceptor open_tcp_listener(boost::asio::io_context& io,
                                                 const std::string& listen, const std::string& key);

// "HOST:PORT" for a log line or URL, an IPv6 address in brackets.
std::string endpoint_text(const boost::asio::ip::tcp::endpoint& ep);

}  // namespace drover
