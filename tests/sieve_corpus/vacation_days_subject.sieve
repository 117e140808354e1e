require "vacation";
vacation :days 3 :subject "Out of office" :from "roadrunner@acme.example.com"
    "Back on the 1st.";
