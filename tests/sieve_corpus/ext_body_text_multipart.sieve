require ["body", "fileinto"];
if body :text :contains "rocket sled" { fileinto "Text"; }
if body :raw :contains "JVBERi0" { fileinto "RawPdf"; }
if body :content "text/html" :contains "<b>invoice</b>" { fileinto "Html"; }
