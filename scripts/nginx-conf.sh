# shellcheck shell=bash
# Pieces of the nginx configs the scripts write (sourced by demo.sh, bench-anchor.sh and
# restart-under-load.sh): one nginx process with everything under one directory.

# nginx_head DIR LOG_LEVEL CONNECTIONS: from the config's first line to an open `http {`
# block with logging off and every temporary path under DIR; the caller writes the rest
# of the block and closes it.
nginx_head() {
    cat <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log $2;
events { worker_connections $3; }
http {
    access_log off;
    client_body_temp_path $1/client_body_temp;
    fastcgi_temp_path $1/fastcgi_temp;
    proxy_temp_path $1/proxy_temp;
    uwsgi_temp_path $1/uwsgi_temp;
    scgi_temp_path $1/scgi_temp;
CONF
}

# nginx_fastcgi_params: the params of Debian's /etc/nginx/fastcgi_params (testkit's
# FASTCGI_PARAMS), one `fastcgi_param` line each, indented for a location block.
nginx_fastcgi_params() {
    local p
    for p in 'QUERY_STRING $query_string' 'REQUEST_METHOD $request_method' \
        'CONTENT_TYPE $content_type' 'CONTENT_LENGTH $content_length' \
        'SCRIPT_NAME $fastcgi_script_name' 'REQUEST_URI $request_uri' \
        'DOCUMENT_URI $document_uri' 'DOCUMENT_ROOT $document_root' \
        'SERVER_PROTOCOL $server_protocol' 'REQUEST_SCHEME $scheme' \
        'GATEWAY_INTERFACE CGI/1.1' 'SERVER_SOFTWARE nginx/$nginx_version' \
        'REMOTE_ADDR $remote_addr' 'REMOTE_PORT $remote_port' 'SERVER_ADDR $server_addr' \
        'SERVER_PORT $server_port' 'SERVER_NAME $server_name' 'REDIRECT_STATUS 200'; do
        echo "            fastcgi_param $p;"
    done
}
