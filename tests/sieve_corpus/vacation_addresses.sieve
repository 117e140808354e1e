require "vacation";
vacation :addresses ["team@acme.example.com", "rr@acme.example.com"] "Away.";
