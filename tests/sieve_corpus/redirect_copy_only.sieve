require "copy";
redirect :copy "phone@example.org";
