#include "common/listen_endpoint.hpp"

#include <fmt/format.h>

#include <boost/asio/ip/address.hpp>
#include <stdexcept>

#include "common/config.hpp"

namespace drover {

boost::asio::ip::tcp::endpoint resolve_listen_endpoint(boost::asio::io_context& io,
                                                       const std::string& listen,
                                                       const std::string& key) {
  using tcp = boost::asio::ip::tcp;
  const auto hp = parse_host_port(listen);
  if (!hp) throw std::runtime_error(fmt::format("{}: '{}' is not host:port", key, listen));
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(hp->host, ec);
  if (!ec) return {address, hp->port};
  tcp::resolver resolver(io);
  const auto results = resolver.resolve(hp->host, std::to_string(hp->port), ec);
  if (ec || results.empty()) {
    throw std::runtime_error(fmt::format("{}: cannot resolve '{}': {}", key, hp->host,
                                         ec ? ec.message() : "no addresses"));
  }
  return results.begin()->endpoint();
}

boost::asio::ip::tcp::acceptor open_tcp_listener(boost::asio::io_context& io,
                                                 const std::string& listen, const std::string& key) {
  using tcp = boost::asio::ip::tcp;
  const tcp::endpoint ep = resolve_listen_endpoint(io, listen, key);
  tcp::acceptor acceptor(io);
  boost::system::error_code ec;
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(ep, ec);
  if (!ec) acceptor.listen(boost::asio::socket_base::max_listen_connections, ec);
  if (ec) throw std::runtime_error(fmt::format("{}: cannot listen on {}: {}", key, listen, ec.message()));
  return acceptor;
}

std::string endpoint_text(const boost::asio::ip::tcp::endpoint& ep) {
  const auto address = ep.address().to_string();
  return ep.address().is_v6() ? fmt::format("[{}]:{}", address, ep.port())
                              : fmt::format("{}:{}", address, ep.port());
}

}  // namespace drover
