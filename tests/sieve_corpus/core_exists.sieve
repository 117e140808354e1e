require "fileinto";
if exists ["List-Id", "Precedence"] { fileinto "Both"; }
elsif exists "List-Id" { fileinto "OnlyList"; }
if not exists "Message-ID" { fileinto "NoId"; }
